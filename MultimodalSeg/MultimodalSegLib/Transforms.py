"""The landmark fit as a VTK transform on a Slicer transform node.

Plain VTK (Slicer's ``vtk``, or pip's ``vtk`` in the tests); no ``slicer`` import. The node is any object with
``vtkMRMLTransformNode``'s ``SetAndObserveTransformToParent``/``SetAndObserveTransformFromParent``.
"""

from __future__ import annotations

import numpy as np
import vtk


def matrixTransform(matrix: np.ndarray) -> vtk.vtkTransform:
    """A linear vtkTransform of a 4x4 matrix (moving -> fixed, "to parent")."""
    vtkMatrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtkMatrix.SetElement(r, c, float(matrix[r][c]))
    transform = vtk.vtkTransform()
    transform.SetMatrix(vtkMatrix)
    return transform


def thinPlateTransform(fit) -> vtk.vtkThinPlateSplineTransform:
    """VTK's thin-plate spline for a tps fit, in the resampling direction (fixed -> moving, "from parent")."""
    source, target = fit.tps_landmarks
    sourcePoints, targetPoints = vtk.vtkPoints(), vtk.vtkPoints()
    for s, t in zip(source, target):
        sourcePoints.InsertNextPoint(*s)
        targetPoints.InsertNextPoint(*t)
    tps = vtk.vtkThinPlateSplineTransform()
    tps.SetBasisToR()  # U(r) = r, the 3D biharmonic kernel multimodalseg.registration fits
    tps.SetSourceLandmarks(sourcePoints)
    tps.SetTargetLandmarks(targetPoints)
    return tps


def setFitOnTransformNode(node, fit) -> None:
    """Put ``fit`` (``multimodalseg.registration`` result) on ``node``, whatever the node held before.

    A linear fit replaces the node's whole transform: ``SetMatrixTransformToParent`` would refuse a node that
    holds a thin-plate spline (Slicer logs an error and returns 0), leaving the volume warped by the old spline.
    """
    if fit.matrix is not None:
        node.SetAndObserveTransformToParent(matrixTransform(fit.matrix))
    else:
        node.SetAndObserveTransformFromParent(thinPlateTransform(fit))
