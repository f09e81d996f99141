"""45 FreeSurfer structures and SUV statistics from FDG PET and T1 MR (MultimodalSeg)."""

import slicer
from MultimodalSegLib import ModuleText
from MultimodalSegLib.Logic import TaskLogicMixin
from MultimodalSegLib.Module import TaskTestMixin, TaskWidgetMixin
from MultimodalSegLib.Samples import registerSampleData
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

TASK_ID = "petmr-brain"


class PETMRBrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "PET/MR Brain"
        self.parent.categories = ModuleText.CATEGORIES
        self.parent.dependencies = []
        self.parent.contributors = ModuleText.CONTRIBUTORS
        self.parent.helpText = ModuleText.helpText(TASK_ID)
        self.parent.acknowledgementText = ModuleText.ACKNOWLEDGEMENT
        slicer.app.connect("startupCompleted()", lambda: registerSampleData(TASK_ID))


class PETMRBrainWidget(TaskWidgetMixin, ScriptedLoadableModuleWidget):
    """The task panel shared by all MultimodalSeg modules (MultimodalSegLib.Panel), built from the task spec."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.buildPanel(TASK_ID, PETMRBrainLogic())


class PETMRBrainLogic(TaskLogicMixin, ScriptedLoadableModuleLogic):
    """Export -> backend -> import; from the console: ``PETMRBrainLogic().segment(inputs)`` (MultimodalSegLib.Logic)."""

    taskId = TASK_ID

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        TaskLogicMixin.__init__(self)


class PETMRBrainTest(TaskTestMixin, ScriptedLoadableModuleTest):
    def test_phantom_segmentation(self):
        # petmr-brain-demo 0.8.2 on the sample: this label 0.697 with its default mirrored pass (0.8.1: 0.694); its
        # mean over 45 (0.355) says little
        self.runPhantomSelfTest(PETMRBrainLogic(), minimumDice=0.67, metric="Left-Cerebral-White-Matter")
