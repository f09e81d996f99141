"""Every Qt connection of the Slicer layer can be called the way PythonQt calls it (the class of issue 17 defect 1).

PythonQt, checked here under the real host: a signal's extra arguments are dropped for a slot that takes fewer,
but a slot that needs more arguments than the signal gives raises TypeError each time (and the handler never runs).
``obj.signal.connect(f)`` binds the signal's first overload, so the Slicer layer connects by signature string only.
The static part reads each ``connect("signature(...)", slot)`` of ``MultimodalSeg/*.py`` and ``MultimodalSegLib``
and checks that the slot needs no more arguments than the signature carries.
"""

from __future__ import annotations

import ast
import re

from pythonqt import MODULE_DIR, requires_host, runScript

SOURCES = sorted([*MODULE_DIR.glob("*.py"), *(MODULE_DIR / "MultimodalSegLib").glob("*.py")])
SIGNATURE = re.compile(r"^\w+\((.*)\)$")


@requires_host
def test_pythonqt_drops_extra_arguments_and_refuses_missing_ones(tmp_path):
    run = runScript(tmp_path, """
import sys, qt, pythonqt_host as host
got = []
class Slots:
    def none(self): got.append("none")
    def one(self, checked): got.append(f"one {checked}")
    def any(self, *args): got.append(f"any {args}")
    def two(self, a, b): got.append("two")
slots = Slots()
button = qt.QPushButton()
button.checkable = True
for name in ("none", "one", "any", "two"):
    button.connect("clicked(bool)", getattr(slots, name))
button.click()
host.process_events(50)
print("GOT", "; ".join(got), "|", host.error_count())
""")
    assert run.code == 1, run.err  # the host's status for an exception reported in a slot
    assert run.lines("GOT") == ["none; one True; any (True,) | 1"]
    assert "two() missing 1 required positional argument: 'b'" in run.err


def arity(function: ast.FunctionDef | ast.Lambda, method: bool) -> tuple[int, bool]:
    """(required positional arguments, takes *args) of a def or lambda; ``self`` not counted for methods."""
    args = function.args
    positional = [*args.posonlyargs, *args.args][1 if method else 0:]
    return len(positional) - len(args.defaults), args.vararg is not None


def connections() -> list[tuple[str, int, str | None, str, tuple[int, bool] | None]]:
    """(file, line, signal signature or None when not a literal, slot text, slot arity or None: unresolved)."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}
    methods: dict[str, list[ast.FunctionDef]] = {}
    for tree in trees.values():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for item in cls.body:
                if isinstance(item, ast.FunctionDef):
                    methods.setdefault(item.name, []).append(item)
    found = []
    for path, tree in trees.items():
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        owner: dict[int, dict[str, ast.FunctionDef]] = {}  # call -> methods of its class (self.X means those)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            own = {m.name: m for m in cls.body if isinstance(m, ast.FunctionDef)}
            for node in ast.walk(cls):
                owner[id(node)] = own

        def named(name: str, call: ast.Call, onSelf: bool, owner=owner) -> list[ast.FunctionDef]:
            own = owner.get(id(call), {})
            return [own[name]] if onSelf and name in own else methods.get(name, [])

        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "connect" and len(call.args) == 2):
                continue
            first, slot = call.args
            signal = first.value if isinstance(first, ast.Constant) else constants.get(getattr(first, "id", ""))
            shapes: list[tuple[int, bool]] = []
            if isinstance(slot, ast.Lambda):
                shapes = [arity(slot, method=False)]
            elif isinstance(slot, ast.Attribute):  # self.method (this class) or worker.method (any of that name)
                onSelf = getattr(slot.value, "id", "") == "self"
                shapes = [arity(m, method=True) for m in named(slot.attr, call, onSelf)]
            elif isinstance(slot, ast.Call) and getattr(slot.func, "id", "") == "_weakSlot":
                shapes = [arity(m, method=True) for m in named(slot.args[1].value, call, True)]
            elif isinstance(slot, ast.Name) and slot.id in functions:
                shapes = [arity(functions[slot.id], method=False)]
            text = ast.get_source_segment(path.read_text(encoding="utf-8"), slot) or "?"
            for shape in shapes or [None]:
                found.append((path.name, call.lineno, signal, text, shape))
    return found


def test_the_slicer_layer_connects_by_signature_only():
    # obj.signal.connect(f) has one argument; obj.connect("signal(args)", f) two.
    for path in SOURCES:
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "connect":
                assert len(call.args) == 2, f"{path.name}:{call.lineno}: connect a signal by its signature string " \
                                            "(PythonQt binds the first overload of obj.signal)"


def slotProblems(found) -> list[str]:
    problems = []
    for name, line, signal, slot, shape in found:
        if shape is None:
            problems.append(f"{name}:{line}: slot {slot} not found")
            continue
        required, varargs = shape
        if signal is None:  # a signature from a loop: the slot must take any arguments
            if not varargs:
                problems.append(f"{name}:{line}: {slot} is connected to several signals but has no *args")
            continue
        match = SIGNATURE.match(signal)
        if not match:
            problems.append(f"{name}:{line}: not a signal signature: {signal!r}")
            continue
        given = len([a for a in match.group(1).split(",") if a.strip()])
        if required > given:
            problems.append(f"{name}:{line}: {signal} gives {given} argument(s), {slot} needs {required}")
    return problems


def test_every_slot_takes_what_its_signal_gives():
    found = connections()
    assert len(found) > 25  # the panels' buttons, selectors, timers and processes
    assert not slotProblems(found), "\n".join(slotProblems(found))


def test_the_check_finds_a_slot_that_needs_more(tmp_path, monkeypatch):
    # The old SlicerProcess: _finished(exitCode, exitStatus) on a signal that gives one argument.
    bad = tmp_path / "Bad.py"
    bad.write_text("class P:\n    def _finished(self, exitCode, exitStatus): pass\n"
                   "    def start(self):\n        self.process.connect('finished(int)', self._finished)\n")
    monkeypatch.setitem(globals(), "SOURCES", [bad])
    assert slotProblems(connections()) == ["Bad.py:4: finished(int) gives 1 argument(s), self._finished needs 2"]


@requires_host
def test_the_skull_strip_selector_round_trips_its_setting_under_pythonqt(tmp_path):
    """The panel's combo-box code path (addItem with data, findData, currentData) for the skull-stripping choice."""
    run = runScript(tmp_path, """
import qt
from multimodalseg.tasks import get_task
from MultimodalSegLib.Settings import PanelSettings, skullStripItems
combo = qt.QComboBox()
for value, text in skullStripItems(get_task("brain-tumor")):
    combo.addItem(text, value)
for stored in ("never", "always", "nonsense"):
    combo.setCurrentIndex(max(combo.findData(PanelSettings(skullStrip=stored).skullStrip), 0))
    print("GOT", stored, combo.currentData, combo.count)
print("HEART", len(skullStripItems(get_task("whole-heart"))))
""")
    assert run.code == 0, run.err
    assert run.lines("GOT") == ["never never 3", "always always 3", "nonsense auto 3"]
    assert run.lines("HEART") == ["0"]
