"""Small real models for the serving tests: GPT-2s from a config with a tokenizer trained here."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "The camera saw a red car turn left at the corner.",
    "A person walks a dog along the river in the morning.",
    "Two trucks stopped at the gate while the guard checked them.",
    "The model answers questions about the video it watched.",
    "Hello, how are you today? I am fine, thank you.",
    "Frames arrive at thirty per second from the front door.",
]
EOS = "<|endoftext|>"
#: A chat template of our own, so the template path is tested (the other model has none).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(vocab_size: int = 400):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0, the models' end of sequence
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS)


def save_gpt2(path: Path, *, n_embd: int = 64, chat_template: str | None = None) -> Path:
    """A random-weight GPT-2 (vocab 400, 128 positions) and its tokenizer in `path`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer()
    if chat_template:
        tokenizer.chat_template = chat_template
    config = GPT2Config(
        n_layer=2,
        n_embd=n_embd,
        n_head=2,
        vocab_size=len(tokenizer),
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_classifier(path: Path) -> Path:
    """A tiny BertForSequenceClassification (three labels): a task the endpoint cannot serve."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    config.num_labels = 3  # a property of every config (its stubs lack the keyword)
    BertForSequenceClassification(config).save_pretrained(path)
    return path
