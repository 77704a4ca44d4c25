"""Train a SimVQ image tokenizer with 🤗 Accelerate.

    accelerate launch training/train.py                      # the cpu-small default, ≤ 10 minutes on 2 CPU cores
    python training/train.py --quantizer_type vq             # the plain-VQ baseline, to see its codebook collapse
    accelerate launch training/train.py --config training/configs/imagenet128-simvq-65k.yaml   # the paper's recipe

Options follow diffusers' training examples; `--config` loads a preset and any option given on the command line
overrides it. The output folder is ready for the Hub: model, image processor, model card, evaluation results, a
reconstruction grid and a plot of the training curves and codebook usage.
"""

import argparse
import json
import logging
import math
import traceback
from collections import deque
from itertools import islice
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from huggingface_hub import create_repo, upload_folder
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from hf_simvq import SimVQConfig, SimVQImageProcessor, SimVQModel
from hf_simvq.evaluation import DEFAULT_METRICS, evaluate_tokenizer
from hf_simvq.model_card import build_model_card
from hf_simvq.training.checkpointing import TrainingProgress, resume, save_checkpoint
from hf_simvq.training.data import load_image_split, with_pixel_values
from hf_simvq.training.deferred_quantization import DeferredQuantizationAutoencoder, start_quantizing
from hf_simvq.training.discriminator import PatchDiscriminator, hinge_discriminator_loss
from hf_simvq.training.ema import ema_weights
from hf_simvq.training.losses import RECONSTRUCTION_LOSSES, TokenizerLoss, load_perceptual_loss
from hf_simvq.training.options import (
    add_config_arguments,
    add_data_arguments,
    config_from_args,
    data_source,
    load_preset,
)
from hf_simvq.training.process_group import end_training
from hf_simvq.training.reporting import codebook_health, plot_training_curves, save_reconstruction_grid

logger = get_logger(__name__)
CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "cpu-small"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="Preset: a name in training/configs (cpu-small, imagenet128-simvq-65k, imagenet128-simvq-262k) or a "
        "YAML path. Options given on the command line override it.",
    )
    add_data_arguments(parser)
    parser.add_argument("--shuffle_buffer_size", type=int, default=10_000, help="With --streaming.")
    parser.add_argument("--resolution", type=int, default=32, help="Side of the square training images.")
    parser.add_argument("--validation_split", default="validation")
    parser.add_argument("--num_train_images", type=int, default=8192, help="Crops of the embedded data.")
    parser.add_argument("--num_validation_images", type=int, default=4096, help="Embedded data; or held out.")
    parser.add_argument(
        "--random_crop",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Random crops and flips for training, drawn from (--seed, epoch, example index): resumable exactly.",
    )
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    add_config_arguments(parser, SimVQConfig)
    # Losses
    parser.add_argument("--reconstruction_loss", choices=sorted(RECONSTRUCTION_LOSSES), default="l1")
    parser.add_argument("--quantizer_loss_weight", type=float, default=1.0)
    parser.add_argument("--perceptual_weight", type=float, default=0.0, help="LPIPS-VGG weight; 0 turns it off.")
    parser.add_argument("--vgg16_weights", default=None, help="Local torchvision vgg16-397923af.pth for LPIPS.")
    parser.add_argument("--discriminator_weight", type=float, default=0.0, help="PatchGAN weight; 0 turns it off.")
    parser.add_argument("--discriminator_start_step", type=int, default=0)
    parser.add_argument("--discriminator_layers", type=int, default=3)
    parser.add_argument("--discriminator_learning_rate", type=float, default=None, help="Default: --learning_rate.")
    parser.add_argument("--generator_loss", choices=["non-saturating", "hinge"], default="non-saturating")
    parser.add_argument(
        "--deferred_quantization_steps",
        type=int,
        default=0,
        help="Train the autoencoder unquantized for this many steps, then initialise the codebook from its latents.",
    )
    parser.add_argument("--deferred_init_batches", type=int, default=16, help="Batches of latents for that init.")
    # Optimisation
    parser.add_argument("--train_batch_size", type=int, default=64, help="Per process.")
    parser.add_argument("--eval_batch_size", type=int, default=256)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--scale_lr", action="store_true", help="Multiply the lr by processes × batch × accumulation.")
    parser.add_argument("--lr_scheduler", default="constant", help="Any diffusers scheduler name (cosine, …).")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--adam_beta1", type=float, default=0.9)
    parser.add_argument("--adam_beta2", type=float, default=0.99)
    parser.add_argument("--adam_weight_decay", type=float, default=0.0)
    parser.add_argument("--adam_epsilon", type=float, default=1e-8)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    parser.add_argument("--num_train_epochs", type=int, default=None)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    # Logging, checkpoints, Hub
    parser.add_argument("--output_dir", default="simvq-model")
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--usage_window", type=int, default=50, help="Steps over which training utilization counts.")
    parser.add_argument("--validation_steps", type=int, default=250)
    parser.add_argument("--num_validation_images_during_training", type=int, default=1024)
    parser.add_argument(
        "--eval_metrics",
        nargs="+",
        choices=DEFAULT_METRICS,
        default=list(DEFAULT_METRICS),
        help="Final evaluation; rfid and lpips are skipped with a warning where their weights are missing.",
    )
    parser.add_argument("--num_grid_images", type=int, default=8)
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None, help='A checkpoint folder, or "latest".')
    parser.add_argument("--report_to", default=None, help="tensorboard, wandb, … (Accelerate trackers).")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    parser.add_argument("--hub_token", default=None)

    config_args, _ = parser.parse_known_args(argv)
    parser.set_defaults(**load_preset(config_args.config, parser, CONFIG_DIR))
    args = parser.parse_args(argv)
    if args.dataset_name and args.train_data_dir:
        parser.error("Give --dataset_name or --train_data_dir, not both.")
    if args.max_train_steps is None and args.num_train_epochs is None:
        parser.error("Give --max_train_steps or --num_train_epochs.")
    if args.streaming and args.max_train_steps is None:
        parser.error("--streaming datasets have no length: give --max_train_steps.")
    return args


def load_datasets(args: argparse.Namespace):
    """Train and validation datasets yielding `pixel_values`: the embedded photos unless a dataset is named.

    A named dataset without a `--validation_split` gives up `--num_validation_images` of its training images.
    """
    source = data_source(args)
    train_dataset = load_image_split("train", args.resolution, args.num_train_images, **source)
    try:
        validation_dataset = load_image_split(
            args.validation_split, args.resolution, args.num_validation_images, **source
        )
    except ValueError:
        if args.streaming:
            validation_dataset = train_dataset.take(args.num_validation_images)
            train_dataset = train_dataset.skip(args.num_validation_images)
        else:
            held_out = train_dataset.train_test_split(test_size=args.num_validation_images, seed=0)
            train_dataset, validation_dataset = held_out["train"], held_out["test"]
        logger.warning(
            f"No {args.validation_split!r} split: validating on {args.num_validation_images} held-out images."
        )
    if args.streaming:
        train_dataset = train_dataset.shuffle(seed=args.seed, buffer_size=args.shuffle_buffer_size)
    return (
        with_pixel_values(train_dataset, args.resolution, args.image_column, args.random_crop, args.seed),
        with_pixel_values(validation_dataset, args.resolution, args.image_column, augment=False),
    )


def finish_run(args, model, processor, validation_dataset, history, results, output_dir: Path) -> None:
    """Write the Hub-ready folder: weights, processor, evaluation, reconstruction grid, curves and model card."""
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "training_history.json").write_text(json.dumps(history))
    grid_images = torch.stack([example["pixel_values"] for example in islice(validation_dataset, args.num_grid_images)])
    save_reconstruction_grid(model, processor, grid_images.to(model.device), output_dir / "reconstructions.png")
    plot_training_curves(history, output_dir / "training_curves.png")
    card = build_model_card(
        model=model,
        eval_results=results,
        dataset_name=args.dataset_name or "scikit-image photos (default)",
        training_args=vars(args),
        reconstruction_grid="reconstructions.png",
        model_name=output_dir.name,
        repo_id=args.hub_model_id,
    )
    card.save(output_dir / "README.md")
    logger.info(f"Saved the model, evaluation ({results}) and model card to {output_dir}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        # Without an accelerator, torchrun processes only join up (MULTI_CPU, gloo) when accelerate is told so.
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), automatic_checkpoint_naming=True, total_limit=args.checkpoints_total_limit
        ),
        # A sampler reseeded from `seed + epoch`: the data order depends on the step only, so a resumed run sees the
        # same batches as an uninterrupted one.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # Unquantized steps leave the quantizer's parameters without gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.deferred_quantization_steps > 0)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file would bury the progress bar
    logger.info(accelerator.state, main_process_only=False)
    try:
        train(args, accelerator)  # returns holding no DDP wrapper, as `end_training` needs
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # the failed run's frames would keep its DDP wrappers alive
        raise
    finally:
        end_training(accelerator)


def train(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """Train, evaluate the EMA weights and, on the main process, write the output folder (and push it)."""
    output_dir = Path(args.output_dir)
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if args.push_to_hub:
            repo_id = create_repo(args.hub_model_id or output_dir.name, exist_ok=True, token=args.hub_token).repo_id

    # Data
    train_dataset, validation_dataset = load_datasets(args)
    train_dataloader = DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        shuffle=not args.streaming,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
    )
    validation_dataloader = DataLoader(validation_dataset, batch_size=args.eval_batch_size, shuffle=False)
    if args.streaming:
        quick_validation_dataset = validation_dataset.take(args.num_validation_images_during_training)
    else:
        num_quick_validation_images = min(args.num_validation_images_during_training, len(validation_dataset))
        quick_validation_dataset = Subset(validation_dataset, range(num_quick_validation_images))
    quick_validation_dataloader = DataLoader(quick_validation_dataset, batch_size=args.eval_batch_size)
    # Deferred quantization reads its latents from a fixed, unshuffled set of training batches: the same images
    # whenever the switch happens, also after a resume (with --random_crop, in the crops of the current epoch).
    latent_dataloader = DataLoader(train_dataset, batch_size=args.train_batch_size, shuffle=False)

    # Model, discriminator, losses
    config = config_from_args(args, SimVQConfig, image_size=args.resolution)
    model = SimVQModel(config)
    processor = SimVQImageProcessor.from_image_size(args.resolution)
    autoencoder = DeferredQuantizationAutoencoder(model)
    perceptual_loss = load_perceptual_loss(args.perceptual_weight, args.vgg16_weights)
    use_discriminator = args.discriminator_weight > 0
    discriminator = None
    if use_discriminator:
        discriminator = PatchDiscriminator(config.out_channels, num_layers=args.discriminator_layers)
        if args.resolution < discriminator.min_image_size:
            raise ValueError(
                f"A {args.discriminator_layers}-layer PatchGAN needs images of at least {discriminator.min_image_size}"
                f"px; use a larger --resolution or fewer --discriminator_layers."
            )

    learning_rate = args.learning_rate
    if args.scale_lr:
        learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    adam = {
        "betas": (args.adam_beta1, args.adam_beta2),
        "weight_decay": args.adam_weight_decay,
        "eps": args.adam_epsilon,
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, **adam)

    # The dataloaders first: under several processes each one serves its process's shard, and an epoch is as many
    # steps as that shard has batches.
    train_dataloader, validation_dataloader, quick_validation_dataloader, latent_dataloader = accelerator.prepare(
        train_dataloader, validation_dataloader, quick_validation_dataloader, latent_dataloader
    )
    if args.streaming:
        num_update_steps_per_epoch = args.max_train_steps
    else:
        num_update_steps_per_epoch = len(train_dataloader) // args.gradient_accumulation_steps
        if num_update_steps_per_epoch == 0:
            raise ValueError(
                f"The training set has {len(train_dataset)} images: fewer than one batch of "
                f"{args.train_batch_size} × {accelerator.num_processes} processes × "
                f"{args.gradient_accumulation_steps} accumulation steps."
            )
    max_train_steps = args.max_train_steps or args.num_train_epochs * num_update_steps_per_epoch
    num_train_epochs = math.ceil(max_train_steps / num_update_steps_per_epoch)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )

    if use_discriminator:
        discriminator_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=args.discriminator_learning_rate or learning_rate, **adam
        )
        autoencoder, optimizer, lr_scheduler, discriminator, discriminator_optimizer = accelerator.prepare(
            autoencoder, optimizer, lr_scheduler, discriminator, discriminator_optimizer
        )
    else:
        autoencoder, optimizer, lr_scheduler = accelerator.prepare(autoencoder, optimizer, lr_scheduler)
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
        f"{args.gradient_accumulation_steps} accumulation *****"
    )

    token_window: deque[torch.Tensor] = deque(maxlen=args.usage_window)
    progress_bar = tqdm(
        range(max_train_steps), initial=progress.global_step, disable=not accelerator.is_local_main_process
    )
    first_epoch = progress.global_step // num_update_steps_per_epoch
    for epoch in range(first_epoch, num_train_epochs):
        train_dataloader.set_epoch(epoch)
        train_dataset.set_epoch(epoch)  # the crops'; under several processes accelerate tells only the sampler
        epoch_dataloader = train_dataloader
        if epoch == first_epoch and progress.global_step > 0:
            batches_done = (progress.global_step % num_update_steps_per_epoch) * args.gradient_accumulation_steps
            epoch_dataloader = accelerator.skip_first_batches(train_dataloader, batches_done)
        for batch in epoch_dataloader:
            quantize = progress.global_step >= args.deferred_quantization_steps
            if quantize and not progress.quantizing:
                start_quantizing(accelerator, model, ema, latent_dataloader, args.deferred_init_batches, args.seed)
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
                logs = {f"train/{k}": accelerator.reduce(v.detach(), "mean").item() for k, v in losses.items()}
                logs["train/lr"] = lr_scheduler.get_last_lr()[0]
                if quantize and token_window:
                    logs.update(codebook_health(model, token_window))
                usage = f"{logs['train/utilization']:.1%}" if "train/utilization" in logs else "unquantized"
                progress_bar.set_postfix(loss=f"{logs['train/reconstruction_loss']:.4f}", usage=usage)
                accelerator.log(logs, step=step)
                progress.history.append({"step": step, **logs})

            if step % args.validation_steps == 0 and step < max_train_steps:
                with ema_weights(ema, model):
                    results = evaluate_tokenizer(
                        model, quick_validation_dataloader, accelerator=accelerator, metrics=("codebook_usage", "psnr")
                    )
                logs = {f"validation/{k}": v for k, v in results.items() if isinstance(v, (int, float))}
                logger.info(f"step {step}: {logs}")
                accelerator.log(logs, step=step)
                progress.history.append({"step": step, **logs})

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
        finish_run(args, model, processor, validation_dataset, progress.history, results, output_dir)
        if args.push_to_hub:
            upload_folder(
                repo_id=repo_id,
                folder_path=output_dir,
                commit_message="SimVQ tokenizer trained with hf-simvq",
                ignore_patterns=["checkpoints/*", "logs/*"],
                token=args.hub_token,
            )


if __name__ == "__main__":
    main()
