"""Writes src/model/timm_vits.json: the shape of every timm ViT that OpenCLIP's SigLIP and
SigLIP 2 configs name (`vision_cfg.timm_model_name`), as timm's registry builds it. A timm
model's shape lives in timm's code, not in the checkpoint, so imgsearch carries this table.

    python3 scripts/timm_vits.py   # with the timm of scripts/requirements.txt
"""
import ast
import inspect
import json
from pathlib import Path

import timm
import torch
from timm.layers import GELUTanh

OUT = Path(__file__).resolve().parent.parent / "src" / "model" / "timm_vits.json"


def mlp_ratio_of(name):
    """The `mlp_ratio` timm's registry function passes (4.0, VisionTransformer's default, if none):
    the MLP width is int(embed_dim * mlp_ratio), also when `timm_model_kwargs` changes embed_dim."""
    source = inspect.getsource(timm.models.model_entrypoint(name))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "mlp_ratio":
            return ast.literal_eval(node.value)
    return 4.0


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
    OUT.write_text(json.dumps(dict(generated_by=f"scripts/timm_vits.py (timm {timm.__version__})", models=table),
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
