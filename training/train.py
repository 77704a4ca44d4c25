"""Train a SimVQ image tokenizer with 🤗 Accelerate.

    accelerate launch training/train.py                      # the cpu-small default, ≤ 10 minutes on 2 CPU cores
    python training/train.py --quantizer_type vq             # the plain-VQ baseline, to see its codebook collapse
    accelerate launch training/train.py --config training/configs/imagenet128-simvq-65k.yaml   # the paper's recipe

Options follow diffusers' training examples; `--config` loads a preset and any option given on the command line
overrides it. The output folder is ready for the Hub: model, image processor, model card, evaluation results, a
reconstruction grid and a plot of the training curves and codebook usage.
"""

import argparse
import logging
from collections import deque
from itertools import islice
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from huggingface_hub import create_repo
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hf_simvq import SimVQConfig, SimVQImageProcessor, SimVQModel, SimVQQuantizer
from hf_simvq.evaluation import DEFAULT_METRICS, evaluate_tokenizer
from hf_simvq.training.checkpointing import TrainingProgress, resume, save_checkpoint
from hf_simvq.training.data import first_examples, training_and_validation_data
from hf_simvq.training.deferred_quantization import DeferredQuantizationAutoencoder, start_quantizing
from hf_simvq.training.discriminator import build_discriminator, hinge_discriminator_loss
from hf_simvq.training.ema import ema_weights
from hf_simvq.training.losses import TokenizerLoss, load_perceptual_loss
from hf_simvq.training.optimization import build_discriminator_optimizer, build_tokenizer_optimizer
from hf_simvq.training.options import (
    add_config_arguments,
    add_data_arguments,
    add_image_loss_arguments,
    add_image_training_arguments,
    add_optimization_arguments,
    add_output_arguments,
    check_run_length,
    config_from_args,
    data_source,
    load_preset,
)
from hf_simvq.training.process_group import run_then_end_training, training_accelerator
from hf_simvq.training.reporting import codebook_health, push_output_folder, training_logs, write_output_folder
from hf_simvq.training.schedule import learning_rate_scheduler, run_length

logger = get_logger(__name__)
CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "cpu-small"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="Preset: a name in training/configs (cpu-small, cpu-65k, imagenet128-simvq-65k, imagenet128-simvq-262k) "
        "or a YAML path. Options given on the command line override it.",
    )
    add_data_arguments(parser)
    add_image_training_arguments(parser)
    add_config_arguments(parser, SimVQConfig)
    add_image_loss_arguments(parser)
    add_optimization_arguments(parser)
    add_output_arguments(parser, default_output_dir="simvq-model")
    parser.add_argument("--num_validation_images_during_training", type=int, default=1024)
    parser.add_argument(
        "--eval_metrics",
        nargs="+",
        choices=DEFAULT_METRICS,
        default=list(DEFAULT_METRICS),
        help="Final evaluation; rfid and lpips are skipped with a warning where their weights are missing.",
    )
    parser.add_argument("--num_grid_images", type=int, default=8)
    parser.add_argument(
        "--subspace_search_in_training",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="SimVQ: search the codebook's principal subspace in training steps too (same codes; pays with a small "
        "latent and a large codebook: SimVQQuantizer's docstring has the measured gain).",
    )

    config_args, _ = parser.parse_known_args(argv)
    parser.set_defaults(**load_preset(config_args.config, parser, CONFIG_DIR))
    args = parser.parse_args(argv)
    if args.dataset_name and args.train_data_dir:
        parser.error("Give --dataset_name or --train_data_dir, not both.")
    check_run_length(parser, args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = training_accelerator(
        output_dir,
        args.gradient_accumulation_steps,
        args.mixed_precision,
        args.report_to,
        args.checkpoints_total_limit,
        # Unquantized steps leave the quantizer's parameters without gradients.
        find_unused_parameters=args.deferred_quantization_steps > 0,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file would bury the progress bar
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

    # Data
    train_dataset, validation_dataset = training_and_validation_data(
        args.resolution,
        args.num_train_images,
        args.num_validation_images,
        args.validation_split,
        args.random_crop,
        args.seed,
        args.shuffle_buffer_size,
        **data_source(args),
    )
    train_dataloader = DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        shuffle=not args.streaming,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
    )
    validation_dataloader = DataLoader(validation_dataset, batch_size=args.eval_batch_size, shuffle=False)
    quick_validation_dataset = first_examples(validation_dataset, args.num_validation_images_during_training)
    quick_validation_dataloader = DataLoader(quick_validation_dataset, batch_size=args.eval_batch_size)
    # Deferred quantization reads its latents from a fixed, unshuffled set of training batches: the same images
    # whenever the switch happens, also after a resume (with --random_crop, in the crops of the current epoch).
    latent_dataloader = DataLoader(train_dataset, batch_size=args.train_batch_size, shuffle=False)

    # Model, discriminator, losses
    config = config_from_args(args, SimVQConfig, image_size=args.resolution)
    model = SimVQModel(config)
    if args.subspace_search_in_training:
        if isinstance(model.quantize, SimVQQuantizer):
            model.quantize.subspace_search_in_training = True
        else:
            logger.warning(f"--subspace_search_in_training: {config.quantizer_type} has no subspace search; ignored.")
    processor = SimVQImageProcessor.from_image_size(args.resolution)
    autoencoder = DeferredQuantizationAutoencoder(model)
    perceptual_loss = load_perceptual_loss(args.perceptual_weight, args.vgg16_weights)
    use_discriminator = args.discriminator_weight > 0
    discriminator = (
        build_discriminator(config.out_channels, args.discriminator_layers, args.resolution)
        if use_discriminator
        else None
    )

    optimizer = build_tokenizer_optimizer(model, args, accelerator.num_processes)

    # The dataloaders first: under several processes each one serves its process's shard, and an epoch is as many
    # steps as that shard has batches.
    train_dataloader, validation_dataloader, quick_validation_dataloader, latent_dataloader = accelerator.prepare(
        train_dataloader, validation_dataloader, quick_validation_dataloader, latent_dataloader
    )
    length = run_length(
        train_dataloader,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
        args.max_train_steps,
        args.num_train_epochs,
        args.streaming,
    )
    max_train_steps = length.max_train_steps
    lr_scheduler = learning_rate_scheduler(
        args.lr_scheduler, optimizer, args.lr_warmup_steps, max_train_steps, accelerator.num_processes
    )

    autoencoder, optimizer, lr_scheduler = accelerator.prepare(autoencoder, optimizer, lr_scheduler)
    if use_discriminator:
        discriminator_optimizer = build_discriminator_optimizer(
            discriminator, args, accelerator.num_processes, args.discriminator_learning_rate
        )
        discriminator, discriminator_optimizer = accelerator.prepare(discriminator, discriminator_optimizer)
    if perceptual_loss is not None:
        perceptual_loss.to(accelerator.device)
    objective = TokenizerLoss(
        reconstruction_loss=args.reconstruction_loss,
        quantizer_loss_weight=args.quantizer_loss_weight,
        perceptual_loss=perceptual_loss,
        perceptual_weight=args.perceptual_weight,
        discriminator_weight=args.discriminator_weight,
        generator_loss=args.generator_loss,
    )

    ema = EMAModel(model.parameters(), decay=args.ema_decay)
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
        accelerator.init_trackers("simvq", config={k: v for k, v in vars(args).items() if not isinstance(v, list)})
        if args.report_to and not accelerator.trackers:
            logger.warning(f"--report_to {args.report_to} started no tracker: is its package installed?")
    logger.info(
        f"***** Training a {config.quantizer_type} tokenizer (K={config.codebook_size}, d={config.embed_dim}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters) for "
        f"{max_train_steps} steps of {args.train_batch_size} × {accelerator.num_processes} processes × "
        f"{args.gradient_accumulation_steps} accumulation, {torch.get_num_threads()} threads each *****"
    )

    token_window: deque[torch.Tensor] = deque(maxlen=args.usage_window)
    progress_bar = tqdm(
        range(max_train_steps), initial=progress.global_step, disable=not accelerator.is_local_main_process
    )
    first_epoch = progress.global_step // length.steps_per_epoch
    for epoch in range(first_epoch, length.num_train_epochs):
        train_dataloader.set_epoch(epoch)
        train_dataset.set_epoch(epoch)  # the crops'; under several processes accelerate tells only the sampler
        epoch_dataloader = progress.epoch_batches(
            accelerator, train_dataloader, epoch, length, args.gradient_accumulation_steps
        )
        for batch in epoch_dataloader:
            quantize = progress.global_step >= args.deferred_quantization_steps
            if quantize and not progress.quantizing:
                start_quantizing(
                    accelerator,
                    model,
                    ema,
                    latent_dataloader,
                    args.deferred_init_batches,
                    args.seed,
                    method=args.deferred_codebook_init,
                )
                progress.quantizing = True
            use_gan = use_discriminator and progress.global_step >= args.discriminator_start_step
            pixel_values = batch["pixel_values"]

            with accelerator.accumulate(autoencoder, *([discriminator] if use_discriminator else [])):
                outputs = autoencoder(pixel_values, quantize=quantize)
                reconstruction = outputs["reconstruction"]
                critic = accelerator.unwrap_model(discriminator) if use_gan else None
                loss, losses = objective(reconstruction, pixel_values, outputs["quantization_loss"], critic)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(autoencoder.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                if use_gan:
                    logits = discriminator(torch.cat([pixel_values, reconstruction.detach()]))
                    real_logits, fake_logits = logits.chunk(2)
                    losses["discriminator_loss"] = hinge_discriminator_loss(real_logits, fake_logits)
                    accelerator.backward(losses["discriminator_loss"])
                    discriminator_optimizer.step()
                    discriminator_optimizer.zero_grad(set_to_none=True)

            if outputs["image_tokens"] is not None:
                token_window.append(accelerator.gather(outputs["image_tokens"]).flatten().cpu())
            if not accelerator.sync_gradients:
                continue
            ema.step(model.parameters())
            progress.global_step += 1
            progress_bar.update(1)
            step = progress.global_step

            if step % args.logging_steps == 0 or step == max_train_steps:
                logs = training_logs(accelerator, losses, lr_scheduler.get_last_lr()[0])
                if quantize and token_window:
                    logs.update(codebook_health(model, token_window, accelerator.gather(outputs["latents"].detach())))
                usage = f"{logs['train/utilization']:.1%}" if "train/utilization" in logs else "unquantized"
                progress_bar.set_postfix(loss=f"{logs['train/reconstruction_loss']:.4f}", usage=usage)
                progress.record(accelerator, logs)

            if step % args.validation_steps == 0 and step < max_train_steps:
                with ema_weights(ema, model):
                    results = evaluate_tokenizer(
                        model, quick_validation_dataloader, accelerator=accelerator, metrics=("codebook_usage", "psnr")
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
    ema.copy_to(model.parameters())
    model.eval()
    results = evaluate_tokenizer(model, validation_dataloader, accelerator=accelerator, metrics=args.eval_metrics)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        grid_images = [example["pixel_values"] for example in islice(validation_dataset, args.num_grid_images)]
        dataset_name = args.dataset_name or "scikit-image photos (default)"
        training_args = vars(args)
        write_output_folder(
            output_dir,
            model,
            processor,
            grid_images,
            progress.history,
            results,
            dataset_name,
            training_args,
            args.hub_model_id,
        )
        logger.info(f"Saved the model, evaluation ({results}) and model card to {output_dir}")
        if args.push_to_hub:
            push_output_folder(repo_id, output_dir, args.hub_token)


if __name__ == "__main__":
    main()
