"""The budget view shows what the planner found: other processes' memory, APIs, and the tasks
whose selected option cannot load here (not counted), each with its reason."""

from __future__ import annotations

from vramdeck.gui.budget_view import BudgetView
from vramdeck.gui.records import GIB, BudgetReport, DevicePlan

MIB = 1024**2


def test_the_note_names_apis_and_what_is_not_counted(qtbot) -> None:
    view = BudgetView()
    qtbot.addWidget(view)
    plan = DevicePlan("cuda:0", "GPU", 10 * GIB, 5 * GIB, {"chat": 6 * GIB}, others=4 * GIB)
    report = BudgetReport(
        valid=False,
        plans=(plan,),
        external_tasks=("assistant",),
        skipped={"vision": "needs an API key: GOOGLE_API_KEY is not set"},
    )
    view.show()
    view.show_report(report)
    assert "do not fit together on cuda:0" in view.verdict.text()
    lines = view.note.text().splitlines()
    assert lines == [
        "External APIs (no local memory): assistant",
        "Not counted, cannot load here: vision (needs an API key: GOOGLE_API_KEY is not set)",
    ]
    assert not view.note.isHidden()
    fits = BudgetReport(True, (DevicePlan("cpu", "RAM", GIB, 512 * MIB, {"t": 20 * MIB}),))
    view.show_report(fits)
    assert view.note.text() == "" and view.note.isHidden()
    view.grab()  # paints the bars, the others' share in the line, with no Qt warning
