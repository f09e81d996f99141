"""Slicer-side helpers shared by the four MultimodalSeg modules.

Plain-Python modules (no ``slicer``, ``qt``, ``ctk`` or ``vtk`` import; tested with pytest outside Slicer):
``Command`` (backend command lines and environment), ``Runner`` (background run state machine around an injected
process), ``Worker`` (the one warm ``multimodalseg serve`` process for all jobs), ``Suv`` (the PET/MR SUV fields),
``Results`` (segment list and table data from the task spec and the backend report), ``Settings``
(panel settings and input auto-assignment), ``Models`` (catalog adapter), ``Landmarks`` (landmark fit summary),
``Requirements`` (dependency list), ``TrainingWriter`` (save-for-training).

Slicer-side modules (import ``slicer``/``qt``/``vtk``; only imported inside Slicer): ``Logic`` (export -> backend
-> import, each module's ``<Name>Logic``), ``Panel`` (the task panel every module shows), ``LandmarkPanel``,
``Transforms`` (a landmark fit on a transform node; VTK only), ``SlicerProcess`` (``qt.QProcess`` behind the
runner), ``Scene`` (node export and result import), ``Install`` (dependency install), ``Samples`` (Sample Data
registration), ``SelfTest`` (the modules' in-Slicer tests).

This file imports nothing, so ``import MultimodalSegLib.Command`` works without Slicer.
"""
