"""diffusers' own pipelines, unchanged, with the SimVQ door as their VQ autoencoder."""

import inspect
import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    LDMPipeline,
    Transformer2DModel,
    UNet2DModel,
    VQDiffusionPipeline,
    VQDiffusionScheduler,
    VQModel,
)
from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import LearnedClassifierFreeSamplingEmbeddings
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import hf_simvq
from hf_simvq import SimVQDiffusersModel

TINY = {
    "image_size": 32,
    "base_channels": 32,
    "channel_multipliers": [1, 2],
    "num_res_blocks": 1,
    "embed_dim": 16,
    "codebook_size": 64,
}
LATENT_SIZE = 16  # 32×32 images, downsampling factor 2


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=LATENT_SIZE,
        in_channels=TINY["embed_dim"],
        out_channels=TINY["embed_dim"],
        block_out_channels=(32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def door(**fields) -> SimVQDiffusersModel:
    torch.manual_seed(0)
    return SimVQDiffusersModel(**TINY, **fields).eval()


def ldm_pipeline(vqvae: SimVQDiffusersModel, unet: UNet2DModel) -> LDMPipeline:
    pipeline = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=100))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipeline: DiffusionPipeline) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return pipeline(batch_size=2, generator=generator, num_inference_steps=3, output_type="np").images


def first_version_config(config: dict) -> dict:
    """A door config as the class's first version, `SimVQVQModel`, saved it: no diffusers-only fields."""
    new_fields = ("scaling_factor", "force_upcast")
    return {**{key: value for key, value in config.items() if key not in new_fields}, "_class_name": "SimVQVQModel"}


def record_inputs(module: torch.nn.Module) -> list[torch.Tensor]:
    """The first argument of every call to `module` from now on."""
    inputs = []
    module.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    return inputs


def test_config_holds_every_vqmodel_field_with_the_simvq_value():
    model = door(scaling_factor=0.5)
    simvq = model.to_simvq_config()
    vqmodel_fields = set(inspect.signature(VQModel.__init__).parameters) - {"self"}
    assert vqmodel_fields <= set(model.config)
    expected = {
        "in_channels": simvq.num_channels,
        "out_channels": simvq.out_channels,
        "latent_channels": simvq.embed_dim,
        "vq_embed_dim": simvq.embed_dim,
        "num_vq_embeddings": simvq.codebook_size,
        "sample_size": simvq.image_size,
        "layers_per_block": simvq.num_res_blocks,
        "norm_num_groups": simvq.norm_num_groups,
        "scaling_factor": 0.5,
        "lookup_from_codebook": False,
    }
    assert {field: model.config[field] for field in expected} == expected
    assert [width for width in model.config.block_out_channels] == [32, 64]
    assert len(model.config.down_block_types) == len(model.config.up_block_types) == len(simvq.channel_multipliers)
    # What pipelines take as the VAE scale factor is the real downsampling, checked on an image.
    assert 2 ** (len(model.config.block_out_channels) - 1) == simvq.downsample_factor
    with torch.no_grad():
        latents = model.encode(torch.zeros(1, 3, 32, 32)).latents
    assert latents.shape == (1, model.config.latent_channels, LATENT_SIZE, LATENT_SIZE)


def test_derived_vqmodel_fields_are_neither_settable_nor_saved_and_cannot_disagree(tmp_path):
    with pytest.raises(ValueError, match="latent_channels"):
        SimVQDiffusersModel(**TINY, latent_channels=8)
    door().save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    saved = json.loads(config_path.read_text())
    assert "latent_channels" not in saved and "num_vq_embeddings" not in saved
    config_path.write_text(json.dumps({**saved, "latent_channels": 99, "num_vq_embeddings": 7}))
    loaded = SimVQDiffusersModel.from_pretrained(tmp_path)
    assert loaded.config.latent_channels == TINY["embed_dim"]
    assert loaded.config.num_vq_embeddings == TINY["codebook_size"]


def test_ldm_pipeline_generates_through_the_door_and_reloads_to_the_same_images(tmp_path):
    pipeline = ldm_pipeline(door(scaling_factor=0.5), tiny_unet())
    decoder_inputs = record_inputs(pipeline.vqvae.decoder)
    images = generate(pipeline)
    assert images.shape == (2, 32, 32, 3)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    # `decode` snapped the UNet's latents to the codebook before decoding, as LDM expects of a VQ first stage.
    (codes,) = decoder_inputs
    vectors = codes.permute(0, 2, 3, 1).reshape(-1, TINY["embed_dim"])
    with torch.no_grad():
        codebook = pipeline.vqvae.quantize.codebook()
    distances = torch.cdist(vectors, codebook, compute_mode="donot_use_mm_for_euclid_dist")
    assert distances.min(dim=1).values.max() < 1e-5

    pipeline.save_pretrained(tmp_path)
    reloaded = DiffusionPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert isinstance(reloaded, LDMPipeline) and isinstance(reloaded.vqvae, SimVQDiffusersModel)
    assert reloaded.vqvae.config.scaling_factor == 0.5
    assert np.array_equal(generate(reloaded), images)


def test_ldm_pipeline_divides_the_latents_by_the_doors_scaling_factor():
    unet = tiny_unet()
    latents = {}
    for scaling_factor in (1.0, 0.25):
        pipeline = ldm_pipeline(door(scaling_factor=scaling_factor), unet)
        quantizer_inputs = record_inputs(pipeline.vqvae.quantize)
        generate(pipeline)
        (latents[scaling_factor],) = quantizer_inputs
    assert torch.equal(latents[0.25], latents[1.0] * 4)


def test_folders_saved_under_the_old_class_name_still_load(tmp_path):
    assert hf_simvq.SimVQVQModel is SimVQDiffusersModel
    pipeline = ldm_pipeline(door(), tiny_unet())
    images = generate(pipeline)
    pipeline.save_pretrained(tmp_path)
    # What the door's first version wrote: its class name in the model's config and in the pipeline's index.
    for path, rewrite in (
        (tmp_path / "vqvae" / "config.json", first_version_config),
        (tmp_path / "model_index.json", lambda index: {**index, "vqvae": [index["vqvae"][0], "SimVQVQModel"]}),
    ):
        path.write_text(json.dumps(rewrite(json.loads(path.read_text()))))

    model = SimVQDiffusersModel.from_pretrained(tmp_path / "vqvae")
    assert model.config.scaling_factor == 1.0 and model.config.force_upcast is False
    for name, tensor in pipeline.vqvae.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    reloaded = DiffusionPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert isinstance(reloaded.vqvae, SimVQDiffusersModel)
    assert np.array_equal(generate(reloaded), images)


def tiny_vq_diffusion_pipeline(vqvae: SimVQDiffusersModel) -> VQDiffusionPipeline:
    """VQ-Diffusion over the door's token ids, with a character-level CLIP tokenizer and text encoder built here."""
    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({token: len(vocab) + i for i, token in enumerate([*letters, *(c + "</w>" for c in letters)])})
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    num_classes = TINY["codebook_size"] + 1  # the codes and VQ-Diffusion's mask class
    pipeline = VQDiffusionPipeline(
        vqvae=vqvae,
        text_encoder=CLIPTextModel(text_config).eval(),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=8),
        transformer=Transformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            num_vector_embeds=num_classes,
            sample_size=LATENT_SIZE,
            num_layers=1,
            cross_attention_dim=32,
            num_embeds_ada_norm=10,
        ).eval(),
        scheduler=VQDiffusionScheduler(num_vec_classes=num_classes, num_train_timesteps=10),
        learned_classifier_free_sampling_embeddings=LearnedClassifierFreeSamplingEmbeddings(learnable=False),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_vq_diffusion_pipeline_decodes_its_token_ids_through_the_doors_codebook():
    vqvae = door()
    pipeline = tiny_vq_diffusion_pipeline(vqvae)
    token_ids = []
    get_codebook_entry = vqvae.quantize.get_codebook_entry

    def recording_get_codebook_entry(indices, shape):
        token_ids.append(indices.clone())
        return get_codebook_entry(indices, shape)

    vqvae.quantize.get_codebook_entry = recording_get_codebook_entry
    decoder_inputs = record_inputs(vqvae.decoder)
    generator = torch.Generator().manual_seed(0)
    images = pipeline("a cat", num_inference_steps=3, generator=generator, output_type="np").images

    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    (ids,) = token_ids
    assert ids.shape == (1, LATENT_SIZE * LATENT_SIZE) and 0 <= ids.min() and ids.max() < TINY["codebook_size"]
    (codes,) = decoder_inputs  # the pipeline's `decode(..., force_not_quantize=True)` decodes exactly those codes
    with torch.no_grad():
        expected = vqvae.quantize.tokens_to_latents(ids.view(1, LATENT_SIZE, LATENT_SIZE))
    assert torch.equal(codes, expected)
