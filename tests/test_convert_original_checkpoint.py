"""hf-simvq-convert on synthetic checkpoints with the authors' Lightning key layout (random tensors, small channels)."""

import argparse
from importlib import import_module
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import AutoImageProcessor, AutoModel

import hf_simvq  # noqa: F401  (registers the Auto classes)
from hf_simvq import SimVQConfig, SimVQModel
from hf_simvq.models.simvq.convert_original_checkpoint import (
    IMAGE_SIMVQ,
    convert_original_checkpoint,
    main,
    write_model_card,
)

SMALL = {"ch": 32, "ch_mult": (1, 2, 4), "num_res_blocks": 2, "z_channels": 16}


def _resblock(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    shapes = {
        f"{prefix}.norm1.weight": (cin,),
        f"{prefix}.norm1.bias": (cin,),
        f"{prefix}.conv1.weight": (cout, cin, 3, 3),
        f"{prefix}.norm2.weight": (cout,),
        f"{prefix}.norm2.bias": (cout,),
        f"{prefix}.conv2.weight": (cout, cout, 3, 3),
    }
    if cin != cout:
        shapes[f"{prefix}.nin_shortcut.weight"] = (cout, cin, 1, 1)
    return shapes


def reference_shapes(ch, ch_mult, num_res_blocks, z_channels, n_e, quantizer="simvq") -> dict[str, tuple[int, ...]]:
    """Key → shape of `taming.models.vq.VQModel` (improved_model Encoder/Decoder), written from their layout."""
    widths = [ch * m for m in ch_mult]
    shapes = {"encoder.conv_in.weight": (ch, 3, 3, 3)}
    channels = ch
    for level, width in enumerate(widths):
        for block in range(num_res_blocks):
            shapes |= _resblock(f"encoder.down.{level}.block.{block}", channels, width)
            channels = width
        if level < len(widths) - 1:
            shapes |= {f"encoder.down.{level}.downsample.weight": (width, width, 3, 3)}
            shapes |= {f"encoder.down.{level}.downsample.bias": (width,)}
    for block in range(num_res_blocks):
        shapes |= _resblock(f"encoder.mid_block.{block}", channels, channels)
    shapes |= {"encoder.norm_out.weight": (channels,), "encoder.norm_out.bias": (channels,)}
    shapes |= {"encoder.conv_out.weight": (z_channels, channels, 1, 1), "encoder.conv_out.bias": (z_channels,)}
    shapes |= {"decoder.conv_in.weight": (channels, z_channels, 3, 3), "decoder.conv_in.bias": (channels,)}
    for block in range(num_res_blocks):
        shapes |= _resblock(f"decoder.mid_block.{block}", channels, channels)
    for level in reversed(range(len(widths))):
        for block in range(num_res_blocks):
            shapes |= _resblock(f"decoder.up.{level}.block.{block}", channels, widths[level])
            channels = widths[level]
        if level > 0:
            shapes |= {f"decoder.up.{level}.upsample.conv1.weight": (4 * channels, channels, 3, 3)}
            shapes |= {f"decoder.up.{level}.upsample.conv1.bias": (4 * channels,)}
    shapes |= {"decoder.norm_out.weight": (channels,), "decoder.norm_out.bias": (channels,)}
    shapes |= {"decoder.conv_out.weight": (3, channels, 3, 3), "decoder.conv_out.bias": (3,)}
    shapes["quantize.embedding.weight"] = (n_e, z_channels)
    if quantizer == "simvq":
        shapes |= {
            "quantize.embedding_proj.weight": (z_channels, z_channels),
            "quantize.embedding_proj.bias": (z_channels,),
        }
    return shapes


def lightning_state_dict(n_e: int, quantizer: str = "simvq", ema: bool = True, seed: int = 0, **sizes):
    """A Lightning `state_dict`: random weights, loss.* tensors, and LitEma copies of the trained ones."""
    generator = torch.Generator().manual_seed(seed)
    shapes = reference_shapes(**{**SMALL, **sizes}, n_e=n_e, quantizer=quantizer)
    state_dict = {key: torch.randn(shape, generator=generator) * 0.1 for key, shape in shapes.items()}
    state_dict["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4, generator=generator)
    if ema:
        frozen = {"quantize.embedding.weight"} if quantizer == "simvq" else set()
        for key in list(state_dict):
            if key not in frozen:
                noise = 0.01 * torch.randn(state_dict[key].shape, generator=generator)
                state_dict["model_ema." + key.replace(".", "")] = state_dict[key] + noise
        state_dict["model_ema.decay"] = torch.tensor(0.999)
        state_dict["model_ema.num_updates"] = torch.tensor(-1, dtype=torch.int)
    return state_dict


def save_checkpoint(path: Path, state_dict: dict, **extra) -> Path:
    torch.save({"state_dict": state_dict, "epoch": 49, "global_step": 250250, **extra}, path)
    return path


def hand_nearest_codes(latents: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code of every latent vector, by squared L2 in float64: `(indices, sorted distances)`."""
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    distances = torch.cdist(flat, codebook.double()) ** 2
    return distances.argmin(dim=1), distances


def assert_tokens_are_nearest_codes(tokens, latents, codebook):
    expected, distances = hand_nearest_codes(latents, codebook)
    tokens = tokens.flatten()
    chosen = distances.gather(1, tokens[:, None]).squeeze(1)
    best = distances.min(dim=1).values
    # Equal, except where two codes tie to float32 rounding (then either is a nearest code).
    assert torch.all((tokens == expected) | (chosen - best <= 1e-5 * best.clamp(min=1)))
    assert (tokens == expected).float().mean() > 0.99


@pytest.fixture
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_simvq_1k_converts_with_ema_and_reloads_with_auto_classes(tmp_path, images):
    state_dict = lightning_state_dict(1024)
    main(
        [
            "--checkpoint",
            str(save_checkpoint(tmp_path / "simvq_1k.ckpt", state_dict)),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {
        path.name for path in (tmp_path / "out").iterdir()
    }
    model = AutoModel.from_pretrained(tmp_path / "out").eval()
    config = model.config
    assert (config.quantizer_type, config.codebook_size, config.embed_dim) == ("simvq", 1024, 16)
    assert (config.base_channels, config.channel_multipliers, config.num_res_blocks) == (32, [1, 2, 4], 2)
    assert config.projection_bias and config.norm_num_groups == 32
    # C raw (frozen: no EMA copy), W and b from the EMA, as the authors evaluate.
    assert torch.equal(model.quantize.frozen_codebook, state_dict["quantize.embedding.weight"])
    assert torch.equal(model.quantize.projection.weight, state_dict["model_ema.quantizeembedding_projweight"])
    assert torch.equal(model.quantize.projection.bias, state_dict["model_ema.quantizeembedding_projbias"])
    codebook = state_dict["quantize.embedding.weight"] @ state_dict["model_ema.quantizeembedding_projweight"].T
    codebook = codebook + state_dict["model_ema.quantizeembedding_projbias"]
    with torch.no_grad():
        encoded = model.encode(images)
    assert_tokens_are_nearest_codes(encoded.image_tokens, encoded.latents, codebook)
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.crop_size == {"height": 128, "width": 128}
    assert processor(torch.zeros(3, 200, 160, dtype=torch.uint8), return_tensors="pt").pixel_values.min() == -1


def test_every_tensor_lands_in_its_named_place(tmp_path):
    """Every converted tensor is exactly one original tensor; spot checks of renames across the table."""
    state_dict = lightning_state_dict(1024, ema=False)
    model = convert_original_checkpoint(
        save_checkpoint(tmp_path / "x.ckpt", state_dict), tmp_path / "out", use_ema=False
    )
    ours = model.state_dict()
    places = {
        "encoder.down.1.block.0.nin_shortcut.weight": "encoder.stages.1.blocks.0.shortcut.weight",
        "encoder.down.0.downsample.bias": "encoder.stages.0.downsample.bias",
        "encoder.mid_block.1.norm2.weight": "encoder.mid.1.norm2.weight",
        "decoder.up.2.block.0.conv1.weight": "decoder.stages.2.blocks.0.conv1.weight",  # coarsest level: first run
        "decoder.up.1.upsample.conv1.weight": "decoder.stages.1.upsample.conv.weight",
        "decoder.up.0.block.1.conv2.weight": "decoder.stages.0.blocks.1.conv2.weight",
        "decoder.mid_block.0.conv1.weight": "decoder.mid.0.conv1.weight",
        "quantize.embedding_proj.weight": "quantize.projection.weight",
        "quantize.embedding.weight": "quantize.frozen_codebook",
    }
    for original, name in places.items():
        assert torch.equal(ours[name], state_dict[original]), (original, name)
    originals = [value for key, value in state_dict.items() if not key.startswith("loss.")]
    assert len(ours) == len(originals)
    for name, value in ours.items():
        assert sum(value.shape == other.shape and torch.equal(value, other) for other in originals) == 1, name


def test_ema_and_raw_weights_are_selected_as_asked(tmp_path):
    state_dict = lightning_state_dict(1024)
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", state_dict)
    with_ema = convert_original_checkpoint(checkpoint, tmp_path / "ema")
    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "raw"), "--no-ema"])
    raw = AutoModel.from_pretrained(tmp_path / "raw")
    for model, key, expected in (
        (with_ema, "encoder.conv_in.weight", state_dict["model_ema.encoderconv_inweight"]),
        (raw, "encoder.conv_in.weight", state_dict["encoder.conv_in.weight"]),
        (with_ema, "decoder.conv_out.bias", state_dict["model_ema.decoderconv_outbias"]),
        (raw, "quantize.projection.weight", state_dict["quantize.embedding_proj.weight"]),
        (raw, "quantize.frozen_codebook", state_dict["quantize.embedding.weight"]),
    ):
        assert torch.equal(model.state_dict()[key], expected), key
    assert not torch.equal(with_ema.encoder.conv_in.weight, raw.encoder.conv_in.weight)


def test_simvq_262k_converts_and_searches_the_whole_codebook(tmp_path):
    sizes = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 8}
    state_dict = lightning_state_dict(262144, **sizes)
    model = convert_original_checkpoint(save_checkpoint(tmp_path / "x.ckpt", state_dict), tmp_path / "out")
    reloaded = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert reloaded.config.codebook_size == 262144 and reloaded.config.embed_dim == 8
    # The saved parameters, bit for bit (the effective codebook C·Wᵀ + b is an addmm whose last bit MKL may round
    # differently from one buffer alignment to another, so it is not the thing to compare exactly).
    reloaded_state = reloaded.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded_state[key], value), key
    codebook = state_dict["quantize.embedding.weight"] @ state_dict["model_ema.quantizeembedding_projweight"].T
    codebook = codebook + state_dict["model_ema.quantizeembedding_projbias"]
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        encoded = reloaded.encode(images)
    assert_tokens_are_nearest_codes(encoded.image_tokens, encoded.latents, codebook)
    assert encoded.image_tokens.max() > 1024  # the search reaches past the first chunks of the codebook


def test_plain_vq_checkpoint_converts_to_quantizer_type_vq(tmp_path, images):
    state_dict = lightning_state_dict(512, quantizer="vq")
    convert_original_checkpoint(save_checkpoint(tmp_path / "x.ckpt", state_dict), tmp_path / "out")
    model = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert model.config.quantizer_type == "vq"
    codebook = state_dict["model_ema.quantizeembeddingweight"]  # trained codebook: its EMA copy
    assert torch.equal(model.quantize.embedding.weight, codebook)
    with torch.no_grad():
        encoded = model.encode(images)
    assert_tokens_are_nearest_codes(encoded.image_tokens, encoded.latents, codebook)


def write_yaml(path: Path, ch=32, ch_mult=(1, 2, 4), n_e=1024, e_dim=16, resolution=64, beta=0.25) -> Path:
    """A config.yaml shaped like the authors' configs/imagenet_simvq_128_B.yaml."""
    ddconfig = {
        "double_z": False,
        "z_channels": 16,
        "resolution": resolution,
        "in_channels": 3,
        "out_ch": 3,
        "ch": ch,
        "ch_mult": list(ch_mult),
        "num_res_blocks": 2,
    }
    quantconfig = {
        "target": "taming.modules.vqvae.quantize.SimVQ",
        "params": {"n_e": n_e, "e_dim": e_dim, "beta": beta, "legacy": False},
    }
    model = {"class_path": "taming.models.vq.VQModel", "init_args": {"ddconfig": ddconfig, "quantconfig": quantconfig}}
    path.write_text(yaml.safe_dump({"seed_everything": True, "model": model}))
    return path


def test_agreeing_yaml_supplies_image_size_and_beta(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", lightning_state_dict(1024))
    config = write_yaml(tmp_path / "config.yaml", resolution=64, beta=0.5)
    model = convert_original_checkpoint(checkpoint, tmp_path / "out", config_yaml=config)
    assert (model.config.image_size, model.config.commitment_beta) == (64, 0.5)


def test_disagreeing_yaml_names_every_disagreeing_field(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", lightning_state_dict(1024))
    config = write_yaml(tmp_path / "config.yaml", ch=64, ch_mult=(1, 2, 2, 4), n_e=65536)
    with pytest.raises(ValueError, match="does not describe this checkpoint") as error:
        main(["--checkpoint", str(checkpoint), "--config", str(config), "--output_dir", str(tmp_path / "out")])
    message = str(error.value)
    for field in ("ddconfig.ch=64", "ddconfig.ch_mult=[1, 2, 2, 4]", "quantconfig.params.n_e=65536"):
        assert field in message
    assert "num_res_blocks" not in message  # agrees
    with pytest.raises(ValueError, match="e_dim=32 but model.init_args.ddconfig.z_channels=16"):
        convert_original_checkpoint(checkpoint, tmp_path / "out", config_yaml=write_yaml(tmp_path / "b.yaml", e_dim=32))
    (tmp_path / "other.yaml").write_text("trainer: {max_epochs: 1}\n")
    with pytest.raises(ValueError, match="no model.init_args.ddconfig"):
        convert_original_checkpoint(checkpoint, tmp_path / "out", config_yaml=tmp_path / "other.yaml")


def test_not_a_simvq_checkpoint_lists_the_missing_keys(tmp_path):
    state_dict = lightning_state_dict(1024)
    del state_dict["quantize.embedding.weight"], state_dict["decoder.conv_out.weight"]
    with pytest.raises(ValueError, match="Not a SimVQ checkpoint") as error:
        convert_original_checkpoint(save_checkpoint(tmp_path / "x.ckpt", state_dict), tmp_path / "out")
    assert "decoder.conv_out.weight" in str(error.value) and "quantize.embedding.weight" in str(error.value)
    assert "encoder.conv_in.weight" not in str(error.value).split("(it has")[0]
    torch.save({"weights": [1, 2]}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no state_dict of tensors"):
        convert_original_checkpoint(tmp_path / "other.ckpt", tmp_path / "out")


def test_unexpected_architecture_names_the_disagreeing_shapes_and_keys(tmp_path):
    state_dict = lightning_state_dict(1024, ema=False)
    state_dict["decoder.mid_block.0.conv1.weight"] = torch.zeros(128, 100, 3, 3)
    with pytest.raises(ValueError, match=r"shapes disagree: decoder\.mid_block\.0\.conv1\.weight") as error:
        convert_original_checkpoint(save_checkpoint(tmp_path / "a.ckpt", state_dict), tmp_path / "out", use_ema=False)
    assert "checkpoint (128, 100, 3, 3), model (128, 128, 3, 3)" in str(error.value)
    # taming's older VQGAN decoder: num_res_blocks + 1 blocks per level.
    state_dict = lightning_state_dict(1024, ema=False)
    state_dict |= {
        key.replace(".block.1.", ".block.2."): value for key, value in state_dict.items() if ".up.0.block.1." in key
    }
    with pytest.raises(ValueError, match=r"no place for: decoder\.up\.0\.block\.2\."):
        convert_original_checkpoint(save_checkpoint(tmp_path / "b.ckpt", state_dict), tmp_path / "out", use_ema=False)


def test_missing_ema_is_an_error_that_offers_no_ema(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", lightning_state_dict(1024, ema=False))
    with pytest.raises(ValueError, match="no EMA weights.*--no-ema"):
        convert_original_checkpoint(checkpoint, tmp_path / "out")
    state_dict = lightning_state_dict(1024)
    del state_dict["model_ema.decoderconv_outweight"]
    with pytest.raises(ValueError, match="EMA lacks model_ema.decoderconv_outweight"):
        convert_original_checkpoint(save_checkpoint(tmp_path / "y.ckpt", state_dict), tmp_path / "out")


def test_truncated_checkpoint_is_named_as_such(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", lightning_state_dict(1024))
    data = checkpoint.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt.*download it again"):
        convert_original_checkpoint(tmp_path / "cut.ckpt", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        convert_original_checkpoint(tmp_path / "absent.ckpt", tmp_path / "out")


def test_foreign_pickled_objects_need_trust_pickle(tmp_path):
    state_dict = lightning_state_dict(1024)
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", state_dict, hyper_parameters=argparse.Namespace(lr=1e-4))
    arguments = ["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"argparse\.Namespace.*can run arbitrary code.*--trust_pickle"):
        main(arguments)
    assert not (tmp_path / "out").exists()
    main([*arguments, "--trust_pickle"])
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert torch.equal(model.encoder.conv_in.weight, state_dict["model_ema.encoderconv_inweight"])


def test_card_names_the_source_and_marks_paper_results_as_reported(tmp_path):
    convert_original_checkpoint(
        save_checkpoint(tmp_path / "simvq_1k.ckpt", lightning_state_dict(1024)), tmp_path / "out"
    )
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "`simvq_1k.ckpt`" in card.text
    assert not card.data.eval_results  # small synthetic channels: not a released configuration, no paper numbers
    # The paper's 65k configuration, built on the meta device: the card needs no weights.
    with torch.device("meta"):
        paper = SimVQModel(SimVQConfig())
    write_model_card(paper, IMAGE_SIMVQ, Path("epoch=49-step=250250.ckpt"), tmp_path, repo_id="me/simvq-65k")
    card = ModelCard.load(tmp_path / "README.md")
    results = {result.metric_type: result for result in card.data.eval_results}
    assert results["rfid"].metric_value == 2.24 and results["psnr"].metric_value == 24.15
    assert results["ssim"].metric_value == 0.784 and results["codebook_utilization"].metric_value == 1.0
    assert results["lpips"].metric_value == 0.12
    assert "arxiv.org/abs/2411.02038" in results["rfid"].source_url
    assert "Reported, not measured here" in card.text and "Measured on" not in card.text
    assert "| rFID | 2.24 |" in card.text and "50000 images" in card.text


def test_push_to_hub_uploads_the_converted_folder(tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, exist_ok):
            calls.append(("create", repo_id))
            return SimpleNamespace(repo_id=f"me/{repo_id}")

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", repo_id, sorted(path.name for path in Path(folder_path).iterdir())))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    checkpoint = save_checkpoint(tmp_path / "x.ckpt", lightning_state_dict(1024))
    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "simvq-1k"), "--push_to_hub"])
    assert calls[0] == ("create", "simvq-1k")
    assert calls[1][:2] == ("upload", "me/simvq-1k") and "model.safetensors" in calls[1][2]


def test_console_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["hf-simvq-convert"].split(":")
    assert getattr(import_module(module), function) is main
