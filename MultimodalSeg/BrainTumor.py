"""Glioma sub-regions (NCR/NET, ED, ET) from FLAIR, T1, T1ce and T2 MR (MultimodalSeg)."""

import slicer
from MultimodalSegLib import ModuleText
from MultimodalSegLib.Logic import TaskLogicMixin
from MultimodalSegLib.Samples import registerSampleData
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

TASK_ID = "brain-tumor"


class BrainTumor(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Brain Tumor (BraTS)"
        self.parent.categories = ModuleText.CATEGORIES
        self.parent.dependencies = []
        self.parent.contributors = ModuleText.CONTRIBUTORS
        self.parent.helpText = ModuleText.helpText(TASK_ID)
        self.parent.acknowledgementText = ModuleText.ACKNOWLEDGEMENT
        slicer.app.connect("startupCompleted()", lambda: registerSampleData(TASK_ID))


class BrainTumorWidget(ScriptedLoadableModuleWidget):
    """The task panel shared by all MultimodalSeg modules (MultimodalSegLib.Panel), built from the task spec."""

    panel = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from MultimodalSegLib.Panel import TaskPanel

        self.panel = TaskPanel(TASK_ID, self.layout, BrainTumorLogic())

    def enter(self):
        if self.panel is not None:
            self.panel.enter()

    def exit(self):
        if self.panel is not None:
            self.panel.exit()

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()


class BrainTumorLogic(TaskLogicMixin, ScriptedLoadableModuleLogic):
    """Export -> backend -> import; from the console: ``BrainTumorLogic().segment(inputs)`` (MultimodalSegLib.Logic)."""

    taskId = TASK_ID

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        TaskLogicMixin.__init__(self)


class BrainTumorTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_segmentation()

    def test_phantom_segmentation(self):
        from MultimodalSegLib.SelfTest import runTaskSelfTest

        runTaskSelfTest(self, BrainTumorLogic(), minimumDice=0.85, metric="regions_mean")
