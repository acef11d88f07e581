"""The inference layer on small real models, with no HTTP: generation, streams, embeddings."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
import torch

from vramdeck.manager.inference import (
    Ability,
    FinishReason,
    GenerationRequest,
    Inference,
    InferenceInputError,
    ModelKind,
    fallback_chat_prompt,
    option_abilities,
)


@pytest.fixture
def config(write_config, local_tasks):
    return write_config(local_tasks)


def greedy_in_process(model, tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


async def test_generation_matches_generate_and_runs_in_the_inference_worker(
    config, make_manager, chat_models
):
    from transformers import AutoTokenizer

    manager = make_manager(config)
    inference = Inference(manager)
    threads: list[str] = []
    try:
        async with manager.use("chat") as model:
            original = model.forward

            def recording_forward(*args, **kwargs):
                threads.append(threading.current_thread().name)
                return original(*args, **kwargs)

            model.forward = recording_forward
            request = GenerationRequest(prompt="The camera saw", max_tokens=12, temperature=0)
            result = await inference.generate("chat", model, request)
            del model.forward
            tokenizer = AutoTokenizer.from_pretrained(chat_models["templated"])
            assert result.text == greedy_in_process(model, tokenizer, "The camera saw", 12)
            assert result.prompt_tokens == len(tokenizer("The camera saw")["input_ids"])
            assert 1 <= result.completion_tokens <= 12
            assert result.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
        assert threads and set(threads) == {"vramdeck-infer-cpu_0"}
    finally:
        await inference.close()


async def test_stream_pieces_add_up_and_stop_strings_cut(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    try:
        async with manager.use("chat") as model:
            whole = await inference.generate(
                "chat", model, GenerationRequest(prompt="Hello", max_tokens=20, temperature=0)
            )
            stream = inference.stream(
                "chat", model, GenerationRequest(prompt="Hello", max_tokens=20, temperature=0)
            )
            pieces = [piece async for piece in stream]
            assert "".join(pieces) == whole.text and (await stream.result()) == whole
            assert len(whole.text) >= 4, "the random model said too little to cut"
            stop = whole.text[2:4]
            cut = await inference.generate(
                "chat",
                model,
                GenerationRequest(prompt="Hello", max_tokens=20, temperature=0, stop=(stop,)),
            )
            assert cut.text == whole.text[: whole.text.find(stop)]
            assert cut.finish_reason is FinishReason.STOP
    finally:
        await inference.close()


async def test_a_closed_stream_stops_the_generation_within_a_token(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    try:
        async with manager.use("chat") as model:
            request = GenerationRequest(prompt="Hello", max_tokens=100, temperature=1.0, seed=1)
            stream = inference.stream("chat", model, request)
            async for _ in stream:
                break
            await stream.aclose()
            result = await stream.result()
            assert result.finish_reason in (FinishReason.CANCELLED, FinishReason.STOP)
            assert result.completion_tokens < 100
    finally:
        await inference.close()


async def test_sampling_with_a_seed_repeats(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    try:
        async with manager.use("chat") as model:
            request = GenerationRequest(prompt="Two trucks", max_tokens=10, temperature=1.5, seed=7)
            first = await inference.generate("chat", model, request)
            second = await inference.generate("chat", model, request)
            assert first == second
    finally:
        await inference.close()


async def test_chat_uses_the_template_or_the_fallback(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    messages = (("system", "Be brief."), ("user", "Hello"))
    try:
        for option in ("templated", "plain"):
            await manager.set_selected_model("chat", option)
            async with manager.use("chat") as model:
                result = await inference.generate(
                    "chat", model, GenerationRequest(messages=messages, max_tokens=2, temperature=0)
                )
                tokenizer = inference._tokenizers[model]
                expected = (
                    "<|system|>Be brief.\n<|user|>Hello\n<|assistant|>"
                    if option == "templated"
                    else "system: Be brief.\nuser: Hello\nassistant:"
                )
                assert result.prompt_tokens == len(tokenizer(expected)["input_ids"])
        assert fallback_chat_prompt(messages) == "system: Be brief.\nuser: Hello\nassistant:"
    finally:
        await inference.close()


async def test_a_prompt_over_the_context_is_refused_before_generating(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    try:
        async with manager.use("chat") as model:
            request = GenerationRequest(prompt="Hello " * 10, max_tokens=125, temperature=0)
            with pytest.raises(InferenceInputError, match="context of 128 tokens"):
                await inference.generate("chat", model, request)
    finally:
        await inference.close()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_minilm_embeddings_are_normalized_and_put_paraphrases_close(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The quarterly tax report is due next week.",
    ]
    try:
        assert option_abilities(manager.tasks["embed"].get_selected_config()).abilities == {
            Ability.EMBEDDING
        }
        async with manager.use("embed") as model:
            result = await inference.embed("embed", model, sentences)
        assert len(result.vectors) == 3 and len(result.vectors[0]) == 384
        assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in result.vectors)
        paraphrase = cosine(result.vectors[0], result.vectors[1])
        unrelated = cosine(result.vectors[0], result.vectors[2])
        assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
        assert result.prompt_tokens > 3 * 5
    finally:
        await inference.close()


async def test_warm_up_runs_one_inference_and_times_it(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    try:
        for task in ("chat", "embed"):
            latency = await inference.warm_up(task)
            assert latency is not None and latency > 0
            assert task in manager.loaded_models
        assert inference.abilities("chat", manager.loaded_models["chat"]).kind is (
            ModelKind.CAUSAL_LM
        )
    finally:
        await inference.close()


async def test_the_loop_keeps_running_while_a_generation_does(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    try:
        async with manager.use("chat") as model:
            ticker = asyncio.ensure_future(tick())
            await inference.generate(
                "chat", model, GenerationRequest(prompt="Hello", max_tokens=30, temperature=0)
            )
            done.set()
            await ticker
        assert ticks > 1  # the loop ran other work while the worker generated
    finally:
        await inference.close()


async def test_a_cancelled_generate_returns_only_after_the_worker_let_go(config, make_manager):
    manager = make_manager(config)
    inference = Inference(manager)
    entered = threading.Event()
    forwards: list[int] = []
    try:
        async with manager.use("chat") as model:
            original = model.forward

            def counting_forward(*args, **kwargs):
                forwards.append(1)
                entered.set()
                return original(*args, **kwargs)

            model.forward = counting_forward
            request = GenerationRequest(prompt="Hello", max_tokens=100, temperature=1.0, seed=2)
            call = asyncio.ensure_future(inference.generate("chat", model, request))
            await asyncio.to_thread(entered.wait)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            ran = len(forwards)
            await inference.workers.run("cpu", lambda: None)  # whatever was queued has run
            del model.forward
        assert len(forwards) == ran, "the model ran after the cancelled call returned"
        assert ran < 100  # the cancel stopped it early
    finally:
        await inference.close()


@pytest.mark.parametrize(
    ("stops", "expected"),
    [
        ((), "line one\nline two\nand three é"),
        (("two",), "line one\nline "),
        (("\nand",), "line one\nline two"),
    ],
)
def test_the_watcher_streams_pieces_that_add_up_across_newlines(stops, expected):
    from tests.serving.models import train_tokenizer
    from vramdeck.manager.inference.text import _Watcher

    tokenizer = train_tokenizer()
    ids = tokenizer("line one\nline two\nand three é")["input_ids"]
    pieces: list[str] = []
    watcher = _Watcher(tokenizer, 0, stops, pieces.append, threading.Event())
    watcher.catch_up(torch.tensor(ids))
    if not watcher.stopped:
        watcher.flush()
    assert "".join(pieces) == watcher.text == expected
    assert all("\ufffd" not in piece for piece in pieces)  # a split character waits for its rest
    assert watcher.stopped == bool(stops)
