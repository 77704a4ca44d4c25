"""Text-to-image with SimVQ tokens in a causal LM's vocabulary: a tiny Llama learns (caption, image) pairs.

    accelerate launch training/train_lm.py --image_tokenizer outputs/cpu-small --output_dir outputs/lm-demo

The captions name the photo and zoom each crop of the embedded default data came from ("a photo of the rocket at
scale 0.5"). The LM is a `LlamaForCausalLM` built from a config (no download), its vocabulary extended with the
SimVQ codes (`extend_language_model`, image rows seeded from the codebook); `generate` with
`ImageSpanLogitsProcessor` then writes image spans that always decode. Writes the loss curve, a sample grid (real
crops above generated images for the same captions), `metrics.json`, the LM and its processor
(`AutoProcessor.from_pretrained(output_dir / "lm")`).
"""

import argparse
import json
import math
from pathlib import Path

import matplotlib
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm
from transformers import AutoModel, LlamaConfig, LlamaForCausalLM

from hf_simvq import SimVQImageProcessor
from hf_simvq.lm.image_vocabulary import SimVQImageVocabulary
from hf_simvq.lm.language_model import ImageSpanLogitsProcessor, extend_language_model
from hf_simvq.lm.multimodal_vocabulary import SimVQMultimodalVocabulary
from hf_simvq.lm.processing_simvq import SimVQMultimodalProcessor
from hf_simvq.lm.word_level_tokenizer import word_level_tokenizer
from hf_simvq.training.data import default_image_datasets
from hf_simvq.training.process_group import run_then_end_training
from hf_simvq.training.schedule import learning_rate_scheduler

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the headless backend)


def add_language_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The LM and optimisation options every demo LM shares."""
    parser.add_argument("--output_dir", default="outputs/lm-demo")
    parser.add_argument("--max_train_steps", type=int, default=600)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--lr_scheduler", default="cosine", help="Any diffusers scheduler name.")
    parser.add_argument("--lr_warmup_steps", type=int, default=50)
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_hidden_layers", type=int, default=3)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_tokenizer", required=True, help="a SimVQ folder, e.g. training/train.py's output")
    parser.add_argument("--num_images", type=int, default=2048, help="training crops of the default data")
    parser.add_argument("--num_samples", type=int, default=6, help="captions to generate images for")
    add_language_model_arguments(parser)
    return parser.parse_args(argv)


def caption(source: str) -> str:
    """`"rocket@0.5"` → `"a photo of the rocket at scale 0.5"`."""
    photo, scale = source.split("@")
    return f"a photo of the {photo.replace('_', ' ')} at scale {scale}"


def prompt_ids(vocabulary: SimVQImageVocabulary, text: str) -> torch.LongTensor:
    """`<s> caption <|image_start|>`: what the LM continues with an image."""
    tokenizer = vocabulary.tokenizer
    words = tokenizer(text, add_special_tokens=False).input_ids
    return torch.tensor([tokenizer.bos_token_id, *words, vocabulary.begin_image_id])


def training_sequences(vocabulary: SimVQImageVocabulary, captions: list[str], images: list) -> TensorDataset:
    """`<s> caption <image span> </s>`, padded; labels ignore the padding."""
    image_ids = torch.cat([vocabulary.images_to_input_ids(images[i : i + 64]) for i in range(0, len(images), 64)])
    tokenizer = vocabulary.tokenizer
    return padded_dataset(
        [
            torch.cat([prompt_ids(vocabulary, text)[:-1], span, torch.tensor([tokenizer.eos_token_id])])
            for text, span in zip(captions, image_ids, strict=True)
        ],
        tokenizer.pad_token_id,
    )


def padded_dataset(sequences: list[torch.LongTensor], pad_token_id: int) -> TensorDataset:
    """Right-padded `(input_ids, attention_mask, labels)`; labels ignore the padding."""
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = sequence
    attention_mask = input_ids != pad_token_id
    labels = input_ids.masked_fill(~attention_mask, -100)
    return TensorDataset(input_ids, attention_mask.long(), labels)


def save_loss_curve(output_dir: Path, losses: list[float]) -> None:
    figure, axis = pyplot.subplots(figsize=(6, 3.5))
    axis.plot(losses)
    axis.set(xlabel="step", ylabel="cross-entropy (nats / token)", yscale="log", title="LM training loss")
    figure.tight_layout()
    figure.savefig(output_dir / "loss_curve.png", dpi=120)


def loss_summary(losses: list[float]) -> dict:
    """Steps run and the mean loss of the first and last tenth of them."""
    window = max(1, len(losses) // 10)
    return {
        "steps": len(losses),
        "first_loss": sum(losses[:window]) / window,
        "final_loss": sum(losses[-window:]) / window,
    }


def save_plots(output_dir: Path, losses: list[float], real: list, generated: list, texts: list[str]) -> None:
    save_loss_curve(output_dir, losses)
    figure, axes = pyplot.subplots(2, len(texts), figsize=(2 * len(texts), 4.6), squeeze=False)
    for column, text in enumerate(texts):
        for row, image in enumerate((real[column], generated[column])):
            axes[row, column].imshow(image)
            axes[row, column].axis("off")
        axes[0, column].set_title(text.removeprefix("a photo of the "), fontsize=7)
    figure.suptitle("real crops (top) · generated from the caption (bottom)", fontsize=9)
    figure.tight_layout()
    figure.savefig(output_dir / "samples.png", dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_then_end_training(Accelerator(), train, args)


def train(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """Tokenize the captioned crops, train the LM on (caption, image) sequences, generate samples, save."""
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    image_tokenizer = AutoModel.from_pretrained(args.image_tokenizer).eval()
    image_processor = SimVQImageProcessor.from_image_size(image_tokenizer.config.image_size)
    data = default_image_datasets(image_tokenizer.config.image_size, args.num_images, 1, seed=args.seed)["train"]
    captions = [caption(source) for source in data["source"]]
    vocabulary = SimVQImageVocabulary.from_tokenizers(word_level_tokenizer(captions), image_tokenizer, image_processor)
    dataset = training_sequences(vocabulary, captions, list(data["image"]))

    model, losses = train_language_model(args, accelerator, vocabulary, dataset)

    if accelerator.is_main_process:
        texts = list(dict.fromkeys(captions))[: args.num_samples]
        real = [data[captions.index(text)]["image"] for text in texts]
        generated = []
        processor = ImageSpanLogitsProcessor(vocabulary)
        for text in texts:
            prompt = prompt_ids(vocabulary, text)[None].to(accelerator.device)
            with torch.no_grad():
                sequence = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    logits_processor=[processor],
                    max_new_tokens=vocabulary.layout.span_body_length + 1,
                    do_sample=True,
                    top_k=50,
                    pad_token_id=vocabulary.tokenizer.pad_token_id,
                )[0].cpu()
            generated.append(image_processor.postprocess(vocabulary.input_ids_to_images(sequence)[0])[0])
        save_plots(output_dir, losses, real, generated, texts)
        metrics = {
            **loss_summary(losses),
            "image_codes": vocabulary.layout.codebook_size,
            "vocab_size": vocabulary.layout.total_vocab_size,
            "sequence_length": dataset.tensors[0].shape[1],
            "num_samples": len(generated),
        }
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        model.save_pretrained(output_dir / "lm")
        SimVQMultimodalProcessor.from_vocabulary(vocabulary).save_pretrained(output_dir / "lm")  # AutoProcessor-able
        accelerator.print(json.dumps(metrics))


def train_language_model(
    args: argparse.Namespace, accelerator: Accelerator, vocabulary: SimVQMultimodalVocabulary, dataset: TensorDataset
) -> tuple[LlamaForCausalLM, list[float]]:
    """A `LlamaForCausalLM` built from the options, its vocabulary extended, trained on `dataset`; eval mode."""
    tokenizer = vocabulary.tokenizer
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=4 * args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        max_position_embeddings=dataset.tensors[0].shape[1],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = extend_language_model(LlamaForCausalLM(config), vocabulary)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    loader = DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True)
    scheduler = learning_rate_scheduler(
        args.lr_scheduler, optimizer, args.lr_warmup_steps, args.max_train_steps, accelerator.num_processes
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    losses = []
    progress = tqdm(total=args.max_train_steps, disable=not accelerator.is_local_main_process, desc="LM")
    for _ in range(math.ceil(args.max_train_steps / len(loader))):
        for input_ids, attention_mask, labels in loader:
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(accelerator.gather(loss.detach()).mean().item())
            progress.update()
            progress.set_postfix(loss=f"{losses[-1]:.3f}")
            if len(losses) >= args.max_train_steps:
                break
        if len(losses) >= args.max_train_steps:
            break
    progress.close()
    return accelerator.unwrap_model(model).eval(), losses


if __name__ == "__main__":
    main()
