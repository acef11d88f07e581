"""The real path: previews, thrash and its fixes with real small models loaded by transformers
on the CPU (the system probe, real host RAM), beside the fakes' property test."""

from __future__ import annotations

import pytest

from vramdeck.manager import Ledger, ModelEvicted, ModelLoaded, ModelLoadError, ModelManager
from vramdeck.manager.events import Thrashing
from vramdeck.manager.thrash import FixKind


@pytest.fixture
def config(real_config):
    # tests/manager/conftest.py's real models; one reload in the window is already a thrash.
    real_config.write_text(real_config.read_text() + "  thrash_reloads: 1\n")
    return real_config


async def test_previews_thrash_and_a_fix_with_real_models(config):
    m = ModelManager(config, ledger=Ledger(None))
    evicted: list[str] = []
    loads: list[ModelLoaded] = []
    warnings: list[Thrashing] = []
    m.events.subscribe(lambda e: evicted.append(e.task), ModelEvicted)
    m.events.subscribe(loads.append, ModelLoaded)
    m.events.subscribe(warnings.append, Thrashing)
    try:
        await m.load_model("generate")
        preview = m.preview_load("embed")
        (victim,) = preview.evictions
        status = m.task_status("generate")
        assert (victim.task, victim.device, victim.bytes) == (
            "generate",
            "cpu",
            status.measured_bytes,
        )
        assert victim.restore_s == pytest.approx(status.load_duration_s)
        assert victim.restore_s is not None and victim.restore_s > 0
        assert [a.option for a in preview.alternatives] == []  # embed has no other option
        await m.load_model("embed")
        assert evicted == ["generate"]  # as previewed

        await m.load_model("generate")  # generate's first reload: pushes embed out
        assert m.preview_load("embed").evictions[0].task == "generate"
        await m.load_model("embed")  # embed's first reload
        assert warnings == []
        await m.load_model("generate")  # generate's second reload: more than 1
        (warning,) = warnings
        assert warning.tasks == ("embed", "generate") and warning.reloads == 3
        assert warning.seconds_lost == pytest.approx(sum(e.duration_s for e in loads[2:]))

        fixes = {f.kind: f for f in m.thrash_fixes(warning.tasks)}
        assert set(fixes) == {FixKind.PIN, FixKind.RAISE_BUDGET, FixKind.SWITCH}
        switch = fixes[FixKind.SWITCH]
        assert (switch.task, switch.option) == ("generate", "small")
        switch_preview = m.preview_switch("generate", "small")
        assert switch_preview.fits and switch_preview.evictions == ()
        await m.set_selected_model("generate", "small")
        await m.load_model("embed")
        assert evicted == ["generate", "embed", "generate", "embed"]  # the fix evicted nothing
        assert set(m.loaded_models) == {"generate", "embed"}
    finally:
        await m.shutdown()


async def test_a_load_preview_of_a_folder_that_is_gone_evicts_nothing(
    write_config, tiny_models, tmp_path
) -> None:
    path = write_config(
        "models:\n"
        f"  kept: {{options: {{a: {{model_id: '{tiny_models['wide']}', vram_gb: 0.02}}}}}}\n"
        f"  gone: {{options: {{a: {{model_id: '{tmp_path}/absent', vram_gb: 0.02}}, "
        f"small: {{model_id: '{tiny_models['small']}', vram_gb: 0.001}}}}}}\n"
        "inference: {memory_budget_gb: 0.03}\n"
    )
    m = ModelManager(path, ledger=Ledger(None))
    try:
        await m.load_model("kept")
        preview = m.preview_load("gone")
        assert not preview.fits and preview.evictions == ()
        assert preview.summary.startswith(
            f"loading gone: model folder {tmp_path}/absent does not exist; small would fit"
        )
        with pytest.raises(ModelLoadError, match="does not exist"):
            await m.load_model("gone")  # as previewed: nothing evicted
        assert set(m.loaded_models) == {"kept"}
    finally:
        await m.shutdown()
