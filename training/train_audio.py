"""Train a SimVQ speech tokenizer with 🤗 Accelerate, on the authors' recipe.

    python training/train_audio.py                           # the cpu-speech default, ≤ 10 min on 2 CPU cores
    python training/train_audio.py --quantizer_type vq       # the plain-VQ baseline, to see its codebook collapse
    accelerate launch training/train_audio.py --config training/configs/libritts24k-simvq-65k.yaml \
        --train_data_dir LibriTTS/train-clean-100                # the paper's recipe on real speech

The recipe is youngsheen/SimVQ's `configs/libritts_24khz.yaml` with `taming/modules/losses/stft.py`: log-mel L1
(weight 45), multi-period (2, 3, 5, 7, 11) and multi-resolution critics with hinge loss and feature matching, the
quantizer loss with weight 1000, Adam (0.5, 0.9), lr 1e-4, 1-second clips, EMA, plus gradient clipping. Options,
checkpoints (exact resume), EMA, schedule and output folder are the image trainer's (`training/train.py`). The output
folder holds the model, feature extractor, model card with `model-index`, evaluation, waveform/spectrogram plot,
training curves and `.wav` reconstructions.
"""

import argparse
import logging
from collections import deque
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from huggingface_hub import create_repo
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hf_simvq import SimVQAudioConfig, SimVQAudioFeatureExtractor, SimVQAudioModel
from hf_simvq.evaluation import AUDIO_METRICS, evaluate_audio_tokenizer
from hf_simvq.training.audio_discriminators import (
    SpeechDiscriminator,
    speech_discriminator_loss,
    speech_generator_losses,
)
from hf_simvq.training.audio_losses import MelReconstructionLoss
from hf_simvq.training.checkpointing import TrainingProgress, resume, save_checkpoint
from hf_simvq.training.deferred_quantization import DeferredQuantizationSpeechAutoencoder, start_quantizing
from hf_simvq.training.ema import ema_weights
from hf_simvq.training.losses import frozen
from hf_simvq.training.optimization import build_discriminator_optimizer, build_tokenizer_optimizer
from hf_simvq.training.options import (
    add_config_arguments,
    add_deferred_quantization_arguments,
    add_optimization_arguments,
    add_output_arguments,
    check_run_length,
    config_from_args,
    load_preset,
)
from hf_simvq.training.process_group import run_then_end_training, training_accelerator
from hf_simvq.training.reporting import codebook_health, push_output_folder, training_logs, write_audio_output_folder
from hf_simvq.training.schedule import learning_rate_scheduler, run_length
from hf_simvq.training.speech_data import speech_datasets

logger = get_logger(__name__)
CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "cpu-speech"


def add_speech_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the speech comes from: a `datasets` dataset, a folder of audio files, or the embedded espeak-ng speech."""
    group = parser.add_argument_group("data (default: sentences spoken by espeak-ng, rendered once and cached)")
    group.add_argument("--dataset_name", default=None, help="Hub dataset id or local dataset path.")
    group.add_argument("--dataset_config_name", default=None)
    group.add_argument("--train_data_dir", default=None, help="A folder of audio files (wav, flac, ogg, …).")
    group.add_argument("--audio_column", default="audio")
    group.add_argument("--validation_split", default="validation")
    group.add_argument("--cache_dir", default=None, help="Default: $HF_SIMVQ_CACHE or ~/.cache/hf_simvq.")
    group.add_argument("--clip_seconds", type=float, default=1.0, help="Training clips (the authors': 1 s).")
    group.add_argument("--eval_clip_seconds", type=float, default=4.0, help="Evaluation clips; shorter are masked.")


def add_speech_loss_arguments(parser: argparse.ArgumentParser) -> None:
    """The speech tokenizer's objective, with the authors' weights as defaults."""
    group = parser.add_argument_group("losses")
    group.add_argument("--mel_loss_weight", type=float, default=45.0)
    group.add_argument("--quantizer_loss_weight", type=float, default=1000.0, help="The authors' commit_weight.")
    group.add_argument("--discriminator_weight", type=float, default=1.0, help="Adversarial + feature matching.")
    group.add_argument("--discriminator_start_step", type=int, default=0)
    group.add_argument("--discriminator_channels", type=int, default=32, help="Width of every critic (32 published).")
    group.add_argument("--discriminator_periods", type=int, nargs="+", default=[2, 3, 5, 7, 11])
    group.add_argument("--discriminator_resolutions", type=int, nargs="+", default=[512, 1024, 2048])
    add_deferred_quantization_arguments(group)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="Preset: a name in training/configs (cpu-speech, libritts24k-simvq-4k, libritts24k-simvq-65k) or a "
        "YAML path. Options given on the command line override it.",
    )
    add_speech_data_arguments(parser)
    add_config_arguments(parser, SimVQAudioConfig)
    add_speech_loss_arguments(parser)
    add_optimization_arguments(parser)
    add_output_arguments(parser, default_output_dir="simvq-speech-model")
    parser.add_argument(
        "--eval_metrics",
        nargs="+",
        choices=AUDIO_METRICS,
        default=["codebook_usage", "mel_distance", "stoi", "pesq", "vuv_f1"],
        help="Final evaluation; utmos is skipped with a message (its weights do not exist offline).",
    )
    parser.add_argument("--num_sample_clips", type=int, default=3, help="Clips plotted and written as .wav.")

    config_args, _ = parser.parse_known_args(argv)
    parser.set_defaults(**load_preset(config_args.config, parser, CONFIG_DIR))
    args = parser.parse_args(argv)
    if args.dataset_name and args.train_data_dir:
        parser.error("Give --dataset_name or --train_data_dir, not both.")
    check_run_length(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    accelerator = training_accelerator(
        Path(args.output_dir),
        args.gradient_accumulation_steps,
        args.mixed_precision,
        args.report_to,
        args.checkpoints_total_limit,
        # Unquantized steps leave the quantizer's parameters without gradients.
        find_unused_parameters=args.deferred_quantization_steps > 0,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    logger.info(accelerator.state, main_process_only=False)
    run_then_end_training(accelerator, train, args)


def train(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """Train, evaluate the EMA weights and, on the main process, write the output folder (and push it)."""
    output_dir = Path(args.output_dir)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if args.push_to_hub:
            repo_id = create_repo(args.hub_model_id or output_dir.name, exist_ok=True, token=args.hub_token).repo_id

    config = config_from_args(args, SimVQAudioConfig)
    data = {
        "dataset_name": args.dataset_name,
        "dataset_config_name": args.dataset_config_name,
        "train_data_dir": args.train_data_dir,
        "audio_column": args.audio_column,
        "validation_split": args.validation_split,
        "cache_dir": args.cache_dir,
    }
    with accelerator.main_process_first():  # the main process renders (or downloads) and caches the data once
        train_dataset, _ = speech_datasets(config.sampling_rate, args.clip_seconds, **data)
        _, validation_dataset = speech_datasets(config.sampling_rate, args.eval_clip_seconds, **data)
    train_dataloader = DataLoader(train_dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True)
    validation_dataloader = DataLoader(validation_dataset, batch_size=args.eval_batch_size)
    latent_dataloader = DataLoader(train_dataset, batch_size=args.train_batch_size, shuffle=False)

    model = SimVQAudioModel(config)
    feature_extractor = SimVQAudioFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    mel_loss = MelReconstructionLoss(config.sampling_rate).to(accelerator.device)
    use_discriminator = args.discriminator_weight > 0
    discriminator = SpeechDiscriminator(
        tuple(args.discriminator_periods), tuple(args.discriminator_resolutions), args.discriminator_channels
    )
    optimizer = build_tokenizer_optimizer(model, args, accelerator.num_processes)
    discriminator_optimizer = build_discriminator_optimizer(discriminator, args, accelerator.num_processes)

    train_dataloader, validation_dataloader, latent_dataloader = accelerator.prepare(
        train_dataloader, validation_dataloader, latent_dataloader
    )
    length = run_length(
        train_dataloader,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
        args.max_train_steps,
        args.num_train_epochs,
    )
    max_train_steps = length.max_train_steps
    lr_scheduler = learning_rate_scheduler(
        args.lr_scheduler, optimizer, args.lr_warmup_steps, max_train_steps, accelerator.num_processes
    )
    autoencoder, optimizer, lr_scheduler, discriminator, discriminator_optimizer = accelerator.prepare(
        DeferredQuantizationSpeechAutoencoder(model), optimizer, lr_scheduler, discriminator, discriminator_optimizer
    )
    tokenizer = accelerator.unwrap_model(autoencoder).model
    critic = accelerator.unwrap_model(discriminator)

    ema = EMAModel(tokenizer.parameters(), decay=args.ema_decay)
    progress = TrainingProgress(
        setup={
            "config": config.to_diff_dict(),
            "discriminator": use_discriminator,
            "processes": accelerator.num_processes,
            "train_batch_size": args.train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
        },
        quantizing=args.deferred_quantization_steps == 0,
    )
    accelerator.register_for_checkpointing(ema, progress)
    if args.resume_from_checkpoint:
        resume(accelerator, args.resume_from_checkpoint, output_dir)
    ema.to(accelerator.device)

    if accelerator.is_main_process:
        accelerator.init_trackers(
            "simvq_audio", config={k: v for k, v in vars(args).items() if not isinstance(v, list)}
        )
    logger.info(
        f"***** Training a {config.quantizer_type} speech tokenizer (K={config.codebook_size}, d={config.embed_dim}, "
        f"{sum(p.numel() for p in tokenizer.parameters()):,} parameters; critics "
        f"{sum(p.numel() for p in critic.parameters()):,}) for {max_train_steps} steps of {args.train_batch_size} × "
        f"{accelerator.num_processes} processes × {args.gradient_accumulation_steps} accumulation of "
        f"{args.clip_seconds} s clips, {len(train_dataset)} clips, {torch.get_num_threads()} threads each *****"
    )

    token_window: deque[torch.Tensor] = deque(maxlen=args.usage_window)
    progress_bar = tqdm(
        range(max_train_steps), initial=progress.global_step, disable=not accelerator.is_local_main_process
    )
    first_epoch = progress.global_step // length.steps_per_epoch
    for epoch in range(first_epoch, length.num_train_epochs):
        train_dataloader.set_epoch(epoch)
        epoch_dataloader = progress.epoch_batches(
            accelerator, train_dataloader, epoch, length, args.gradient_accumulation_steps
        )
        for micro_step, batch in enumerate(epoch_dataloader):
            if micro_step % args.gradient_accumulation_steps == 0:
                # The backbone's dropout draws from a seed of the step, so a resumed run draws what an uninterrupted
                # one does (the global RNG state also serves the dataloader, which a resume recreates mid-epoch).
                torch.manual_seed(args.seed + 1_000_003 * progress.global_step + accelerator.process_index)
            quantize = progress.global_step >= args.deferred_quantization_steps
            if quantize and not progress.quantizing:
                start_quantizing(
                    accelerator,
                    tokenizer,
                    ema,
                    latent_dataloader,
                    args.deferred_init_batches,
                    args.seed,
                    method=args.deferred_codebook_init,
                )
                progress.quantizing = True
            use_gan = use_discriminator and progress.global_step >= args.discriminator_start_step
            audio, mask = batch["input_values"], batch["padding_mask"]
            with accelerator.accumulate(autoencoder, discriminator):
                outputs = autoencoder(audio, padding_mask=mask, quantize=quantize)
                # Padding is silence in both: masking it keeps the loss on real audio only.
                reconstruction = outputs["audio_values"] * mask
                real = audio[:, 0] * mask
                losses = {
                    "mel_loss": mel_loss(reconstruction, real),
                    "quantization_loss": outputs["quantization_loss"],
                }
                loss = (
                    args.mel_loss_weight * losses["mel_loss"] + args.quantizer_loss_weight * losses["quantization_loss"]
                )
                if use_gan:
                    with frozen(critic):  # its own gradients come from its own loss only, also when accumulating
                        losses.update(speech_generator_losses(critic, real, reconstruction))
                    loss = loss + args.discriminator_weight * (
                        losses["generator_loss"] + losses["feature_matching_loss"]
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(autoencoder.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                if use_gan:
                    losses["discriminator_loss"] = speech_discriminator_loss(discriminator, real, reconstruction)
                    accelerator.backward(losses["discriminator_loss"])
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(discriminator.parameters(), args.max_grad_norm)
                    discriminator_optimizer.step()
                    discriminator_optimizer.zero_grad(set_to_none=True)

            if outputs["audio_codes"] is not None:
                codes = outputs["audio_codes"].masked_fill(outputs["audio_codes_mask"] == 0, -1)
                gathered = accelerator.gather(codes).flatten().cpu()
                token_window.append(gathered[gathered >= 0])
            if not accelerator.sync_gradients:
                continue
            ema.step(tokenizer.parameters())
            progress.global_step += 1
            progress_bar.update(1)
            step = progress.global_step

            if step % args.logging_steps == 0 or step == max_train_steps:
                logs = training_logs(accelerator, losses, lr_scheduler.get_last_lr()[0])
                postfix = {"mel": f"{logs['train/mel_loss']:.3f}"}
                if token_window:  # empty while Deferred Quantization trains unquantized
                    logs.update(codebook_health(tokenizer, token_window))
                    postfix["usage"] = f"{logs['train/utilization']:.1%}"
                progress_bar.set_postfix(postfix)
                progress.record(accelerator, logs)

            if step % args.validation_steps == 0 and step < max_train_steps:
                with ema_weights(ema, tokenizer):
                    results = evaluate_audio_tokenizer(
                        tokenizer, validation_dataloader, accelerator, metrics=("codebook_usage", "mel_distance")
                    )
                logs = {f"validation/{k}": v for k, v in results.items() if isinstance(v, (int, float))}
                logger.info(f"step {step}: {logs}")
                progress.record(accelerator, logs)

            if step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, progress)
            if step >= max_train_steps:
                break
        if progress.global_step >= max_train_steps:
            break
    progress_bar.close()

    # The released model is the EMA of the weights: evaluate and save that.
    ema.copy_to(tokenizer.parameters())
    tokenizer.eval()
    results = evaluate_audio_tokenizer(tokenizer, validation_dataloader, accelerator, metrics=args.eval_metrics)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        sample_clips = validation_dataset.tensors
        sample_clips = {name: tensor[: args.num_sample_clips] for name, tensor in sample_clips.items()}
        dataset_name = args.dataset_name or args.train_data_dir or "espeak-ng sentences (default)"
        write_audio_output_folder(
            output_dir,
            tokenizer,
            feature_extractor,
            sample_clips,
            mel_loss.spectrogram.cpu(),
            progress.history,
            results,
            dataset_name,
            vars(args),
            args.hub_model_id,
        )
        logger.info(f"Saved the model, evaluation ({results}) and model card to {output_dir}")
        if args.push_to_hub:
            push_output_folder(repo_id, output_dir, args.hub_token)


if __name__ == "__main__":
    main()
