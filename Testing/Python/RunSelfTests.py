"""Run the four modules' self-tests inside an installed 3D Slicer and exit with their status.

    Slicer --no-main-window --python-script Testing/Python/RunSelfTests.py [ModuleName ...]

    Slicer --testing --no-main-window --python-script Testing/Python/RunSelfTests.py [ModuleName ...]

Each self-test loads a phantom case, registers it with the phantom's landmarks, runs the module's demo model
through the module's logic (the warm backend process) and checks the segment names and Dice (see
MultimodalSegLib/SelfTest.py). The tests use the logic, not the panels, so no main window is needed. Slicer installs
no Python packages under --testing: install the backend's dependencies first (click Apply once in a normal Slicer
session); otherwise each test fails at once, naming what is missing. CI cannot run Slicer; this is for a machine
that has it.
"""

import importlib
import sys
import traceback

import slicer

MODULES = ("PETMRBrain", "BrainTumor", "WholeHeart", "SpineCTMR")


def main(names):
    failed = []
    for name in names or MODULES:
        try:
            test = getattr(importlib.import_module(name), f"{name}Test")()
            test.runTest()
            print(f"{name}: passed")
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"{name}: FAILED")
    print(f"{len(names or MODULES) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    slicer.util.exit(main([a for a in sys.argv[1:] if not a.startswith("-")]))
