"""Writes src/model/timm_vits.json: the shape of every timm ViT that OpenCLIP's SigLIP and
SigLIP 2 configs name (`vision_cfg.timm_model_name`), of every EVA tower its EVA-CLIP configs
name (and MobileCLIP-B's ViT, pooled and projected as they are), and of every ConvNeXt its
ConvNeXt configs name, as timm's registry builds them. A timm
model's shape lives in timm's code, not in the checkpoint, so imgsearch carries this table.

    python3 scripts/timm_vits.py   # with the timm of scripts/requirements.txt
"""
import ast
import inspect
import json
from pathlib import Path

import open_clip
import timm
import torch
from timm.layers import GELUTanh, RotaryEmbeddingCat, SwiGLU
from timm.models.eva import EvaBlockPostNorm

OUT = Path(__file__).resolve().parent.parent / "src" / "model" / "timm_vits.json"


def mlp_ratio_of(name):
    """The `mlp_ratio` timm's registry function passes (4.0, VisionTransformer's default, if none):
    the MLP width is int(embed_dim * mlp_ratio), also when `timm_model_kwargs` changes embed_dim."""
    source = inspect.getsource(timm.models.model_entrypoint(name))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "mlp_ratio":
            # A number, or arithmetic on numbers (EVA's `4 * 2 / 3`), as Python evaluates it.
            assert all(isinstance(n, (ast.Constant, ast.BinOp, ast.operator)) for n in ast.walk(node.value)), name
            return eval(compile(ast.Expression(node.value), name, "eval"), {"__builtins__": {}})
    return 4.0


def eva_shape(name):
    """The shape of one of timm's EVA towers as open_clip builds it (class-token pooling, timm's
    head as the projection), with what sets its blocks apart from a plain ViT's."""
    with torch.device("meta"):
        model = timm.create_model(name, global_pool="token")
    block = model.blocks[0]
    attn, mlp = block.attn, block.mlp
    assert model.cls_token is not None and model.reg_token is None and not model.no_embed_class, name
    assert model.pos_embed is not None and isinstance(model.norm_pre, torch.nn.Identity), name
    assert isinstance(model.fc_norm, torch.nn.Identity) and model.norm.eps == 1e-6, name
    assert getattr(block, "gamma_1", None) is None and attn.gate is None, name
    assert isinstance(attn.q_norm, torch.nn.Identity), name
    # q and v have biases, k none (a fused qkv keeps them as q_bias and v_bias).
    assert (attn.q_bias if attn.qkv is not None else attn.q_proj.bias) is not None, name
    swiglu = isinstance(mlp, SwiGLU)
    assert swiglu or type(mlp).__name__ == "Mlp", name
    if not swiglu:
        assert isinstance(mlp.act, torch.nn.GELU) and mlp.act.approximate == "none", name
    ratio = mlp_ratio_of(name)
    hidden = mlp.fc2.in_features
    assert int(model.embed_dim * ratio) == hidden, name
    rope = model.rope
    if rope is not None:
        # The axial rotary embedding of EVA-02: index grid scaled to `ref_feat_shape`, interleaved pairs.
        assert isinstance(rope, RotaryEmbeddingCat) and not rope.in_pixels and not rope.rotate_half, name
        assert rope.temperature == 10000 and rope.grid_offset == 0 and rope.grid_indexing == "ij", name
        assert rope.ref_feat_shape[0] == rope.ref_feat_shape[1], name
    return dict(
        img_size=model.patch_embed.img_size[0],
        patch_size=model.patch_embed.patch_size[0],
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=attn.num_heads,
        mlp_ratio=ratio,
        swiglu=swiglu,
        mlp_norm=not isinstance(mlp.norm, torch.nn.Identity),
        attention_norm=not isinstance(attn.norm, torch.nn.Identity),
        fused_qkv=attn.qkv is not None,
        rope_reference_grid=None if rope is None else rope.ref_feat_shape[0],
        post_norm=isinstance(block, EvaBlockPostNorm),
    )


def mci_shape(name):
    """MobileCLIP-B's image tower (`vit_base_mci_224`): a plain ViT, pooled at its class token and
    projected by timm's head as EVA's are, whose patches come from a stem of three convs (4×4 to
    embed_dim / 4 channels, batch norm, GELU; 2×2, the same; 2×2 with a bias to embed_dim) and
    whose learned positions are the patches' alone (`no_embed_class`)."""
    with torch.device("meta"):
        model = timm.create_model(name, global_pool="token")
    block = model.blocks[0]
    attn, mlp = block.attn, block.mlp
    d = model.embed_dim
    assert model.cls_token is not None and model.reg_token is None and model.no_embed_class, name
    assert isinstance(model.norm_pre, torch.nn.Identity) and isinstance(model.fc_norm, torch.nn.Identity), name
    assert model.norm.eps == 1e-6 and isinstance(block.ls1, torch.nn.Identity), name
    assert attn.qkv.bias is not None and isinstance(attn.q_norm, torch.nn.Identity), name
    assert type(mlp).__name__ == "Mlp" and isinstance(mlp.act, torch.nn.GELU) and mlp.act.approximate == "none", name
    stem = list(model.patch_embed.backbone)
    assert isinstance(model.patch_embed.proj, torch.nn.Identity) and len(stem) == 3, name
    for layer, (kernel, channels, last) in zip(stem, [(4, d // 4, False), (2, d // 4, False), (2, d, True)]):
        conv = layer.conv
        assert conv.kernel_size == (kernel, kernel) and conv.stride == (kernel, kernel) and conv.padding == (0, 0), name
        assert conv.out_channels == channels and (conv.bias is not None) == last, name
        if not last:
            assert isinstance(layer.bn, torch.nn.BatchNorm2d) and layer.bn.eps == 1e-5, name
            assert isinstance(layer.bn.act, torch.nn.GELU) and layer.bn.act.approximate == "none", name
    ratio = mlp_ratio_of(name)
    assert int(d * ratio) == mlp.fc2.in_features, name
    # A token per 16 × 16 pixels: the stem's strides, 4 · 2 · 2.
    patch = 16 * model.patch_embed.patch_size[0]
    assert model.patch_embed.grid_size[0] * patch == model.patch_embed.img_size[0], name
    return dict(
        img_size=model.patch_embed.img_size[0],
        patch_size=patch,
        embed_dim=d,
        depth=len(model.blocks),
        num_heads=attn.num_heads,
        mlp_ratio=ratio,
        swiglu=False,
        mlp_norm=False,
        attention_norm=False,
        fused_qkv=True,
        qkv_bias=True,
        rope_reference_grid=None,
        post_norm=False,
        conv_stem=True,
        positions_without_class=True,
    )


def convnext_shape(name):
    """The shape of one of timm's ConvNeXts as open_clip builds it (timm's own pooling and head
    norm, open_clip's projection after them)."""
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=0)
    stem_conv, stem_norm = model.stem[0], model.stem[1]
    assert stem_conv.kernel_size == stem_conv.stride and stem_conv.kernel_size[0] == stem_conv.kernel_size[1], name
    stages = list(model.stages)
    blocks = [b for s in stages for b in s.blocks]
    block = blocks[0]
    assert not block.use_conv_mlp and block.gamma is not None and block.conv_dw.kernel_size == (7, 7), name
    # torch's or timm's exact GELU.
    assert type(block.mlp.act).__name__ == "GELU" and getattr(block.mlp.act, "approximate", "none") == "none", name
    assert all(b.mlp.fc1.out_features == 4 * b.mlp.fc1.in_features for b in blocks), name
    for i, stage in enumerate(stages):
        down = stage.downsample
        if i == 0:
            assert isinstance(down, torch.nn.Identity), name
        else:
            assert down[1].kernel_size == (2, 2) and down[1].stride == (2, 2), name
    head = model.head
    assert head.global_pool.pool_type == "avg" and isinstance(head.pre_logits, torch.nn.Identity), name
    eps = {stem_norm.eps, block.norm.eps, head.norm.eps} | {s.downsample[0].eps for s in stages[1:]}
    assert len(eps) == 1, name
    return dict(
        stem_patch=stem_conv.kernel_size[0],
        dims=[len(s.blocks) and s.blocks[0].norm.normalized_shape[0] for s in stages],
        depths=[len(s.blocks) for s in stages],
        norm_eps=eps.pop(),
    )


def main():
    table = {}
    # The attention-pooled ("map") SigLIP towers; the `_gap_` ones (PaliGemma's) pool otherwise.
    for name in sorted(n for n in timm.list_models("vit_*siglip*") if "_gap_" not in n):
        with torch.device("meta"):
            model = timm.create_model(name)
        block = model.blocks[0]
        assert model.cls_token is None and model.global_pool == "map", name
        assert model.norm.eps == 1e-6 and block.attn.qkv.bias is not None, name
        ratio = mlp_ratio_of(name)
        assert int(model.embed_dim * ratio) == block.mlp.fc1.out_features, name
        act = block.mlp.act
        assert type(act) in (torch.nn.GELU, GELUTanh) and getattr(act, "approximate", "none") == "none", name
        table[name] = dict(
            img_size=model.patch_embed.img_size[0],
            patch_size=model.patch_embed.patch_size[0],
            embed_dim=model.embed_dim,
            depth=len(model.blocks),
            num_heads=block.attn.num_heads,
            mlp_ratio=ratio,
            act_layer="gelu_tanh" if isinstance(act, GELUTanh) else "gelu",
        )
    configs = Path(open_clip.__file__).parent / "model_configs"
    eva_names = {json.loads(p.read_text())["vision_cfg"].get("timm_model_name") for p in configs.glob("*.json")}
    evas = {name: eva_shape(name) for name in sorted(n for n in eva_names if n and n.startswith("eva"))}
    evas.update({name: mci_shape(name) for name in sorted(n for n in eva_names if n and n.startswith("vit_") and "_mci_" in n)})
    convnexts = {name: convnext_shape(name) for name in sorted(n for n in eva_names if n and n.startswith("convnext"))}
    generator = f"scripts/timm_vits.py (timm {timm.__version__}, open_clip {open_clip.__version__})"
    OUT.write_text(json.dumps(dict(generated_by=generator, models=table, evas=evas, convnexts=convnexts), indent=1) + "\n")


if __name__ == "__main__":
    main()
