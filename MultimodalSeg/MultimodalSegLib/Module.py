"""What the four module files share: the panel's lifecycle and the self-test's shape.

A module file keeps only what Slicer looks up by name (``<Name>``, ``<Name>Widget``, ``<Name>Logic``,
``<Name>Test``) and its task id; these mixins go first in each class's bases.
"""

import slicer


class TaskWidgetMixin:
    """Builds the task panel (``Panel.TaskPanel``) in ``buildPanel`` and forwards Slicer's enter/exit/cleanup."""

    panel = None

    def buildPanel(self, taskId, logic):
        from MultimodalSegLib.Panel import TaskPanel

        self.panel = TaskPanel(taskId, self.layout, logic)

    def enter(self):
        if self.panel is not None:
            self.panel.enter()

    def exit(self):
        if self.panel is not None:
            self.panel.exit()

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()


class TaskTestMixin:
    """Slicer's self-test on an empty scene: ``runTest`` runs the module's ``test_phantom_segmentation``."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_segmentation()

    def runPhantomSelfTest(self, logic, minimumDice, metric="mean"):
        from MultimodalSegLib.SelfTest import runTaskSelfTest

        return runTaskSelfTest(self, logic, minimumDice=minimumDice, metric=metric)
