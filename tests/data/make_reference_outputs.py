"""How tests/data/reference_outputs.safetensors was made: run at commit 9751ac8 (before the CPU
work-unit path), from the repository root: python tests/data/make_reference_outputs.py.
When theris-small's shipped file was replaced, the 0.1.0 weights these outputs came from (sha256
2a2108d4...) were added to the fixture as small.state.* with their config (metadata small_config)."""
import torch
from safetensors.torch import save_file
from theris_cli.model import THERIS, ModelConfig
from theris_cli.weights.load import load_model
torch.set_num_threads(1)
out = {}
g = torch.Generator().manual_seed(1234)
small = load_model("theris-small")
x_small = torch.rand(1, 4, 1, 20, 28, generator=g)
x_small3 = torch.rand(1, 3, 1, 13, 9, generator=g)
with torch.no_grad():
    out["small.x"] = x_small; out["small.y"] = small(x_small).contiguous()
    out["small.x3"] = x_small3; out["small.y3"] = small(x_small3).contiguous()
# a bidirectional, two-group, multi-block config with every option on: covers base's code paths
cfg = ModelConfig(dim=16, enc_blocks=1, n_blocks=2, d_state=8, expand=2, headdim=8, ngroups=2, chunk_size=16,
                  hilbert_window=4, time_embed_dim=8, decay_bins=4, spectral_bins=4, dec_dim=4, dec_blocks=1,
                  bidirectional=True)
torch.manual_seed(5)
bi = THERIS(cfg).eval()
with torch.no_grad():  # perturb the zero-initialised prompt and mask so they matter
    for n, p in bi.named_parameters():
        if "prompt" in n or "gain" in n:
            p.normal_(0, 0.3)
x_bi = torch.rand(2, 4, 1, 11, 14, generator=g)
with torch.no_grad():
    out["bi.x"] = x_bi; out["bi.y"] = bi(x_bi).contiguous()
for k, v in bi.state_dict().items():
    out["bi.state." + k] = v.contiguous()
save_file(out, "tests/data/reference_outputs.safetensors", metadata={"bi_config": __import__("json").dumps(cfg.to_dict()), "commit": "9751ac8"})
print({k: tuple(v.shape) for k, v in out.items() if not k.startswith("bi.state")})
