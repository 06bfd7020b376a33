import math

import pytest
import torch
import torch.nn.functional as F

from mmer.errors import ConfigError
from mmer.nn.encoders import CTCAligner, TransformerConfig, TransformerEncoder, concat_segments

CFG = TransformerConfig(hidden_size=16, num_layers=2, num_heads=4, intermediate_size=16, max_positions=10, input_dim=5)


def make_inputs(b=3, length=7, f=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, f, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, 4:] = False  # padded tail
    mask[2] = False  # missing modality
    return x, mask


def reference_forward(enc: TransformerEncoder, x, mask, type_ids=None):
    """BERT post-LN encoder written out with explicit softmax (eval mode, no dropout)."""
    emb = enc.embedding
    h = emb.projection(x) if emb.projection is not None else x
    h = h + emb.position.weight[: x.shape[1]]
    if emb.token_type is not None:
        h = h + emb.token_type(type_ids if type_ids is not None else torch.zeros(x.shape[:2], dtype=torch.long))
    h = emb.norm(h)
    nh, dh = enc.cfg.num_heads, enc.cfg.hidden_size // enc.cfg.num_heads
    bias = (1.0 - mask.float())[:, None, None, :] * -10000.0
    for layer in enc.layers:
        att = layer.attention.attention
        b, length, d = h.shape
        q, k, v = (lin(h).view(b, length, nh, dh).transpose(1, 2) for lin in (att.query, att.key, att.value))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, length, d)
        a = layer.attention.norm(h + layer.attention.dense(ctx))
        ffn = layer.ffn
        gelu = lambda t: t * 0.5 * (1.0 + torch.erf(t / math.sqrt(2.0)))  # noqa: E731  exact GELU
        h = ffn.norm(a + ffn.contract(gelu(ffn.expand(a))))
    return h


def test_matches_explicit_bert_computation():
    torch.manual_seed(0)
    enc = TransformerEncoder(CFG).eval()
    x, mask = make_inputs()
    out = enc(x, mask)
    assert out.shape == (3, 7, 16)
    torch.testing.assert_close(out, reference_forward(enc, x, mask), atol=1e-5, rtol=1e-5)


def test_padding_receives_no_attention_and_missing_sequence_is_finite():
    torch.manual_seed(0)
    enc = TransformerEncoder(CFG).eval()
    x, mask = make_inputs()
    out = enc(x, mask)
    x2 = x.clone()
    x2[1, 4:] = 1e3 * torch.randn(3, 5)  # garbage in the padding of sample 1
    out2 = enc(x2, mask)
    torch.testing.assert_close(out2[1, :4], out[1, :4])
    assert torch.isfinite(out).all()  # sample 2 has no real token at all
    # its outputs are a uniform average over (masked) keys, not NaN, and gradients stay finite
    enc.train()
    x.requires_grad_(True)
    enc(x, mask).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_gradients_reach_every_parameter_in_training():
    torch.manual_seed(0)
    enc = TransformerEncoder(TransformerConfig(**{**CFG.__dict__, "input_norm": True, "type_vocab_size": 2}))
    x, mask = make_inputs()
    types = torch.randint(0, 2, mask.shape)
    enc(x, mask, types).pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_dropout_only_in_training():
    torch.manual_seed(0)
    enc = TransformerEncoder(CFG)
    x, mask = make_inputs()
    enc.eval()
    torch.testing.assert_close(enc(x, mask), enc(x, mask))
    enc.train()
    assert not torch.allclose(enc(x, mask), enc(x, mask))


def test_bert_initialisation_and_no_pooler():
    torch.manual_seed(0)
    cfg = TransformerConfig(
        hidden_size=64, num_layers=1, num_heads=4, intermediate_size=64, input_dim=300, input_norm=True
    )
    enc = TransformerEncoder(cfg)
    for name, p in enc.named_parameters():
        if name.endswith("bias"):
            assert p.abs().max() == 0, name
        elif "norm" in name:
            assert torch.all(p == 1), name
        else:
            assert abs(p.std().item() - 0.02) < 0.004, name
    assert enc.input_norm.eps == 1e-12 and enc.embedding.norm.eps == 1e-12
    assert not any("pool" in n for n, _ in enc.named_parameters())


def test_input_layer_norm_normalises_raw_features():
    cfg = TransformerConfig(hidden_size=8, num_layers=0, num_heads=2, intermediate_size=8, input_dim=5, input_norm=True)
    enc = TransformerEncoder(cfg).eval()
    x = torch.randn(2, 3, 5, dtype=torch.float64) * 50 + 7  # float64 raw features are cast first
    h = enc(x, torch.ones(2, 3, dtype=torch.bool))
    z = F.layer_norm(x.float(), (5,), eps=1e-12)
    expected = enc.embedding.norm(enc.embedding.projection(z) + enc.embedding.position.weight[:3])
    torch.testing.assert_close(h, expected)


def test_cross_modal_variant_uses_positions_and_type_ids():
    torch.manual_seed(0)
    cfg = TransformerConfig(
        hidden_size=16, num_layers=1, num_heads=4, intermediate_size=16, max_positions=12, type_vocab_size=2
    )
    cme = TransformerEncoder(cfg).eval()
    assert cme.embedding.projection is None
    a, b = torch.randn(2, 4, 16), torch.randn(2, 5, 16)
    ma, mb = torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)
    mb[0, 3:] = False
    x, mask, types = concat_segments([(a, ma), (b, mb)])
    assert x.shape == (2, 9, 16) and types.tolist()[0] == [0] * 4 + [1] * 5
    assert torch.equal(mask, torch.cat([ma, mb], 1))
    out = cme(x, mask, types)
    torch.testing.assert_close(out, reference_forward(cme, x, mask, types), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, cme(x, mask, torch.zeros_like(types)))


def test_configuration_errors_are_clear():
    with pytest.raises(ConfigError, match="not divisible"):
        TransformerConfig(hidden_size=10, num_heads=4)
    with pytest.raises(ConfigError, match="input_norm"):
        TransformerConfig(input_norm=True)
    enc = TransformerEncoder(CFG)
    with pytest.raises(ConfigError, match="max_positions=10"):
        enc(torch.randn(1, 11, 5), torch.ones(1, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        enc(torch.randn(1, 3, 5), torch.ones(1, 3))


def test_ctc_aligner_shapes_masking_and_formula():
    torch.manual_seed(0)
    ctc = CTCAligner(input_dim=4, out_len=3)
    x = torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1] = False
    out = ctc(x, mask)
    assert out.aligned.shape == (2, 3, 4) and out.logits.shape == (2, 6, 4)
    assert out.mask.tolist() == [[True] * 3, [False] * 3]
    p = torch.softmax(out.logits, -1)[..., 1:] * mask[..., None]
    torch.testing.assert_close(out.aligned, p.transpose(1, 2) @ x)
    assert torch.all(out.aligned[1] == 0)
    # without a mask: the official behaviour (every frame weighted)
    plain = ctc(x)
    torch.testing.assert_close(plain.aligned, torch.softmax(plain.logits, -1)[..., 1:].transpose(1, 2) @ x)
    x.requires_grad_(True)
    ctc(x, mask).aligned.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[0, 4:] == 0)


def test_attention_block_cross_attends_to_a_masked_context():
    from mmer.nn.encoders import AttentionBlock

    torch.manual_seed(0)
    block = AttentionBlock(CFG).eval()
    queries = torch.randn(2, 3, 16)  # e.g. TAILOR's label embeddings
    context = torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    out = block(queries, mask, context)
    assert out.shape == (2, 3, 16)
    context2 = context.clone()
    context2[0, 4:] = 50.0
    torch.testing.assert_close(block(queries, mask, context2), out)


def test_dropout_attention_matches_the_explicit_formula_and_its_gradients():
    """The memory-lean attention equals softmax -> dropout -> @ v written out, with the same dropout mask."""
    from mmer.nn.dropout import keep_mask, keep_scale
    from mmer.nn.encoders import dropout_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    key_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    bias = (~key_mask).double()[:, None, None, :] * -10000.0
    torch.manual_seed(7)
    out = dropout_attention(q, k, v, bias, 0.3)
    torch.manual_seed(7)  # the same draw: the kept entries, as the function makes them
    keep = keep_mask((2, 3, 5, 5), 0.3)
    probs = torch.softmax(q @ k.transpose(-1, -2) / 2.0 + bias, dim=-1)
    reference = (probs * keep * keep_scale(0.3)) @ v
    torch.testing.assert_close(out, reference)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    expected = torch.autograd.grad((reference * weights).sum(), (q, k, v))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    kept = keep.double().mean()
    assert 0.5 < float(kept) < 0.9
    with pytest.raises(ValueError, match="0 < p < 1"):
        dropout_attention(q, k, v, bias, 0.0)


def test_dropout_attention_in_chunks_equals_one_chunk(monkeypatch):
    """Chunking over samples (bounded memory) changes nothing: same output and gradients for the same mask."""
    import mmer.nn.encoders as encoders

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(5, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.zeros(5, 1, 1, 6, dtype=torch.float64)
    bias[3, ..., 4:] = -10000.0
    results = []
    for chunk_elements in (1 << 22, 2 * 2 * 6 * 6):  # one chunk; chunks of two samples
        monkeypatch.setattr(encoders, "_ATTENTION_CHUNK_ELEMENTS", chunk_elements)
        torch.manual_seed(11)
        out = encoders.dropout_attention(q, k, v, bias, 0.3)
        results.append((out, torch.autograd.grad(out.square().sum(), (q, k, v))))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_explicit_position_ids_pick_rows_of_the_position_table():
    """position_ids (e.g. multi-party tokens positioned by segment) replace the default 0..L-1."""
    torch.manual_seed(0)
    enc = TransformerEncoder(TransformerConfig(hidden_size=8, num_layers=1, num_heads=2, max_positions=6, input_dim=3)).eval()
    x, mask = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    default = enc(x, mask)
    torch.testing.assert_close(enc(x, mask, position_ids=torch.arange(4).expand(2, 4)), default)
    same_segment = torch.tensor([[0, 1, 0, 1], [2, 2, 3, 3]])
    out = enc(x, mask, position_ids=same_segment)
    assert not torch.allclose(out, default)
    moved = enc.embedding(x, position_ids=same_segment) - enc.embedding(x)
    assert moved.abs().sum() > 0
    with pytest.raises(ValueError, match="position_ids"):
        enc(x, mask, position_ids=torch.full((2, 4), 6))
