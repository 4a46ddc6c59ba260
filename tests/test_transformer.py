"""Tests of dlkb.transformer against torch's attention, Transformer layers and the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkb.transformer import (
    MultiHeadAttention,
    Seq2SeqTransformer,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    causal_mask,
    load_torch_weights,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)


# ---------------------------------------------------------------- scaled_dot_product_attention


def test_sdpa_shapes_and_values_match_torch(generator):
    q = torch.randn(2, 3, 5, 4, generator=generator)
    k = torch.randn(2, 3, 7, 4, generator=generator)
    v = torch.randn(2, 3, 7, 6, generator=generator)
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 5, 6) and w.shape == (2, 3, 5, 7)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))


def test_sdpa_weights_follow_the_formula_slowly(generator):
    q, k, v = (torch.randn(3, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v)
    for i in range(3):
        scores = [sum(q[i, e] * k[j, e] for e in range(4)) / math.sqrt(4) for j in range(3)]
        z = sum(math.exp(s) for s in scores)
        for j in range(3):
            assert abs(w[i, j].item() - math.exp(scores[j]) / z) < 1e-12
        assert torch.allclose(out[i], sum(w[i, j] * v[j] for j in range(3)))


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (2, 3, 1, 7)])
def test_sdpa_boolean_mask_matches_torch(generator, mask_shape):
    q = torch.randn(2, 3, 5, 4, generator=generator)
    k = torch.randn(2, 3, 7, 4, generator=generator)
    v = torch.randn(2, 3, 7, 4, generator=generator)
    mask = torch.rand(mask_shape, generator=generator) > 0.4
    mask[..., 0] = True  # no fully masked row here (tested separately)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert not w.masked_select(~mask.expand_as(w)).any()


def test_sdpa_fully_masked_row_gives_zeros_like_torch(generator):
    q, k, v = (torch.randn(1, 4, 3, generator=generator) for _ in range(3))
    mask = causal_mask(4).clone()
    mask[2] = False  # query 2 may attend to nothing
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (out[0, 2] == 0).all() and (w[0, 2] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    # and the backward pass stays finite too
    q.requires_grad_(True)
    scaled_dot_product_attention(q, k, v, mask)[0].sum().backward()
    assert torch.isfinite(q.grad).all()


def test_sdpa_causal_mask_matches_is_causal(generator):
    q, k, v = (torch.randn(2, 6, 4, generator=generator) for _ in range(3))
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_non_contiguous_and_broadcast_batch(generator):
    q = torch.randn(4, 2, 5, generator=generator).transpose(0, 1)  # [2, 4, 5], non-contiguous
    k = torch.randn(1, 6, 5, generator=generator)  # batch broadcasts
    v = torch.randn(1, 6, 3, generator=generator)
    assert not q.is_contiguous()
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 4, 3) and w.shape == (2, 4, 6)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k.expand(2, 6, 5), v.expand(2, 6, 3)))


def test_sdpa_gradcheck(generator):
    q = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, False]] * 3)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask), (q, k, v))


def test_sdpa_bad_inputs():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match=r"scaled_dot_product_attention: q must be a torch.Tensor; got list"):
        scaled_dot_product_attention([1.0], k, v)
    with pytest.raises(TypeError, match=r"k must be a floating-point tensor; got dtype torch.int64"):
        scaled_dot_product_attention(q, k.long(), v)
    with pytest.raises(ValueError, match=r"v must have at least 2 dimensions; got shape \(4,\)"):
        scaled_dot_product_attention(q, k, torch.randn(4))
    with pytest.raises(ValueError, match=r"q and k must have the same embedding size E \(last dim\); got 4 and 3"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match=r"k and v must have the same length S \(dim -2\); got 5 and 6"):
        scaled_dot_product_attention(q, k, torch.randn(2, 6, 4))
    with pytest.raises(TypeError, match=r"q, k and v must have the same dtype"):
        scaled_dot_product_attention(q.double(), k, v)
    with pytest.raises(ValueError, match=r"leading \(batch\) dimensions of q, k and v must broadcast"):
        scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(TypeError, match=r"mask must be a boolean tensor \(True = may attend\); got dtype torch.float32"):
        scaled_dot_product_attention(q, k, v, torch.zeros(3, 5))
    with pytest.raises(TypeError, match=r"scaled_dot_product_attention: mask must be a torch\.Tensor; got list"):
        scaled_dot_product_attention(q, k, v, [[True]])
    with pytest.raises(ValueError, match=r"mask of shape \(5, 3\) does not broadcast to \(2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 3, 5\) does not broadcast to \(2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 3, 5, dtype=torch.bool))  # would grow the batch


# ---------------------------------------------------------------- causal mask, positional encoding


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j].item() == (j <= i)
    # torch's float convention: 0 where allowed, -inf where masked
    torch.testing.assert_close(
        torch.zeros(4, 4).masked_fill(~m, float("-inf")), nn.Transformer.generate_square_subsequent_mask(4)
    )
    with pytest.raises(ValueError, match=r"causal_mask: size must be >= 1; got 0"):
        causal_mask(0)
    with pytest.raises(TypeError, match=r"causal_mask: size must be an int; got float"):
        causal_mask(3.0)


def test_positional_encoding_formula():
    pe = sinusoidal_positional_encoding(50, 6)
    assert pe.shape == (50, 6) and pe.dtype == torch.float32
    for pos in (0, 1, 7, 49):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert abs(pe[pos, 2 * i].item() - math.sin(angle)) < 1e-6
            assert abs(pe[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-6


def test_positional_encoding_relative_position_is_a_rotation():
    d, k = 8, 5
    pe = sinusoidal_positional_encoding(40, d).double()
    omega = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    m = torch.zeros(d, d, dtype=torch.float64)
    for i, w in enumerate(omega):
        c, s = math.cos(k * w), math.sin(k * w)
        m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    torch.testing.assert_close(pe[:-k] @ m, pe[k:], atol=1e-6, rtol=0)


def test_positional_encoding_bad_inputs():
    with pytest.raises(ValueError, match=r"sinusoidal_positional_encoding: d_model must be even \(sin/cos pairs\); got 5"):
        sinusoidal_positional_encoding(10, 5)
    with pytest.raises(ValueError, match=r"max_len must be >= 1; got 0"):
        sinusoidal_positional_encoding(0, 4)
    with pytest.raises(TypeError, match=r"d_model must be an int; got float"):
        sinusoidal_positional_encoding(10, 4.0)


# ---------------------------------------------------------------- MultiHeadAttention


def _mha_pair(e: int = 8, h: int = 2):
    ref = nn.MultiheadAttention(e, h, batch_first=True)
    ours = MultiHeadAttention(e, h)
    load_torch_weights(ours, ref)
    return ours, ref


def test_mha_matches_torch_self_and_cross_attention(generator):
    torch.manual_seed(0)
    ours, ref = _mha_pair(8, 2)
    x = torch.randn(3, 5, 8, generator=generator)
    mem = torch.randn(3, 7, 8, generator=generator)
    for q, kv in ((x, x), (x, mem)):
        out, w = ours(q, kv, kv)
        ref_out, ref_w = ref(q, kv, kv)
        assert out.shape == (3, 5, 8) and w.shape == (3, 2, 5, kv.shape[1])
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(w.mean(dim=1), ref_w)
        _, ref_w_heads = ref(q, kv, kv, average_attn_weights=False)
        torch.testing.assert_close(w, ref_w_heads)


def test_mha_masks_use_the_opposite_convention_of_torch(generator):
    torch.manual_seed(0)
    ours, ref = _mha_pair(12, 3)
    q = torch.randn(2, 4, 12, generator=generator)
    kv = torch.randn(2, 6, 12, generator=generator)
    lengths = torch.tensor([6, 3])
    keep = torch.arange(6) < lengths[:, None]  # [N, S], True = real token
    attn = torch.rand(4, 6, generator=generator) > 0.3
    attn[:, 0] = True
    out, w = ours(q, kv, kv, keep[:, None, :] & attn)  # (N, L, S) after broadcasting
    ref_out, ref_w = ref(q, kv, kv, key_padding_mask=~keep, attn_mask=~attn)  # True = ignore in torch
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w.mean(1), ref_w)
    # padding mask alone, as (N, 1, S)
    out, _ = ours(q, kv, kv, keep[:, None, :])
    torch.testing.assert_close(out, ref(q, kv, kv, key_padding_mask=~keep)[0])
    # a per-head mask (N, H, L, S)
    heads = torch.rand(2, 3, 4, 6, generator=generator) > 0.3
    heads[..., 0] = True
    out, _ = ours(q, kv, kv, heads)
    torch.testing.assert_close(out, ref(q, kv, kv, attn_mask=~heads.reshape(6, 4, 6))[0])


def test_mha_fully_masked_row_zero_where_torch_gives_nan(generator):
    torch.manual_seed(0)
    ours, ref = _mha_pair(8, 2)
    x = torch.randn(2, 3, 8, generator=generator)
    keep = torch.tensor([[True, True, True], [False, False, False]])
    out, w = ours(x, x, x, keep[:, None, :])
    ref_out = ref(x, x, x, key_padding_mask=~keep)[0]
    assert torch.isnan(ref_out[1]).all()
    assert (w[1] == 0).all()
    torch.testing.assert_close(out[1], ours.w_o.bias.expand(3, 8))  # zero context, then W^O's bias
    torch.testing.assert_close(out[0], ref_out[0])


def test_mha_no_bias_non_contiguous_and_gradcheck(generator):
    ref = nn.MultiheadAttention(4, 2, bias=False, batch_first=True)
    ours = MultiHeadAttention(4, 2, bias=False)
    with torch.no_grad():
        ours.w_q.weight.copy_(ref.in_proj_weight[:4])
        ours.w_k.weight.copy_(ref.in_proj_weight[4:8])
        ours.w_v.weight.copy_(ref.in_proj_weight[8:])
        ours.w_o.weight.copy_(ref.out_proj.weight)
    assert ours.w_q.bias is None
    x = torch.randn(5, 2, 4, generator=generator).transpose(0, 1)  # [2, 5, 4] non-contiguous
    torch.testing.assert_close(ours(x, x, x)[0], ref(x, x, x)[0])
    ours = ours.double()
    x = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = causal_mask(3)
    assert torch.autograd.gradcheck(lambda t: ours(t, t, t, mask)[0], (x,))


def test_mha_bad_inputs():
    with pytest.raises(ValueError, match=r"MultiHeadAttention: d_model must be divisible by num_heads; got 10 and 4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(TypeError, match=r"MultiHeadAttention: bias must be a bool; got int"):
        MultiHeadAttention(8, 2, bias=1)
    m = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"query must have shape \(N, length, d_model=8\); got \(2, 3, 6\)"):
        m(torch.randn(2, 3, 6), x, x)
    with pytest.raises(ValueError, match=r"key must have at least 3 dimensions; got shape \(3, 8\)"):
        m(x, torch.randn(3, 8), x)
    with pytest.raises(ValueError, match=r"key and value must have the same \(N, S\); got \(2, 3, 8\) and \(2, 4, 8\)"):
        m(x, x, torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"query and key must have the same batch size N; got 2 and 1"):
        m(x, torch.randn(1, 3, 8), torch.randn(1, 3, 8))
    with pytest.raises(TypeError, match=r"mask must be a boolean tensor"):
        m(x, x, x, torch.zeros(3, 3))
    with pytest.raises(TypeError, match=r"MultiHeadAttention\.forward: mask must be a torch\.Tensor; got list"):
        m(x, x, x, [[True]])
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 1, 4\) does not broadcast to \(2, 2, 3, 3\)"):
        m(x, x, x, torch.ones(2, 1, 4, dtype=torch.bool))


# ---------------------------------------------------------------- encoder and decoder layers


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(generator, norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = TransformerEncoderLayer(8, 2, 16, norm_first=norm_first)
    load_torch_weights(ours, ref)
    with torch.no_grad():  # make LayerNorm's affine parameters non-trivial
        for a, b in ((ours.norm1, ref.norm1), (ours.norm2, ref.norm2)):
            a.weight.uniform_(0.5, 1.5), a.bias.uniform_(-0.5, 0.5)
            b.weight.copy_(a.weight), b.bias.copy_(a.bias)
    x = torch.randn(3, 5, 8, generator=generator)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours(x, keep[:, None, :])[keep], ref(x, src_key_padding_mask=~keep)[keep])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(generator, norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(8, 4, 16, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = TransformerDecoderLayer(8, 4, 16, norm_first=norm_first)
    load_torch_weights(ours, ref)
    x = torch.randn(4, 2, 8, generator=generator).transpose(0, 1)  # non-contiguous [2, 4, 8]
    mem = torch.randn(2, 6, 8, generator=generator)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    ours_out = ours(x, mem, causal_mask(4), keep[:, None, :])
    ref_out = ref(
        x, mem, tgt_mask=nn.Transformer.generate_square_subsequent_mask(4), memory_key_padding_mask=~keep
    )
    torch.testing.assert_close(ours_out, ref_out)


def test_layers_bad_arguments_and_dropout():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: d_model must be divisible by num_heads; got 6 and 4"):
        TransformerEncoderLayer(6, 4, 8)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: dropout must be in \[0, 1\); got 1.0"):
        TransformerDecoderLayer(8, 2, 8, dropout=1.0)
    with pytest.raises(TypeError, match=r"TransformerEncoderLayer: norm_first must be a bool; got str"):
        TransformerEncoderLayer(8, 2, 8, norm_first="yes")
    with pytest.raises(TypeError, match=r"TransformerDecoderLayer: dim_feedforward must be an int; got float"):
        TransformerDecoderLayer(8, 2, 8.0)
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.5)
    x = torch.randn(2, 3, 8)
    assert not torch.equal(layer(x), layer(x))  # dropout active in training mode
    layer.eval()
    assert torch.equal(layer(x), layer(x))


# ---------------------------------------------------------------- Seq2SeqTransformer


def _model(**kw) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(9, 11, d_model=16, num_heads=2, dim_feedforward=32, max_len=12, pad_idx=0, **kw).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_seq2seq_shapes_causality_and_padding(generator, norm_first):
    m = _model(norm_first=norm_first, num_encoder_layers=2)
    src = torch.randint(1, 9, (3, 5), generator=generator)
    tgt = torch.randint(1, 11, (3, 4), generator=generator)
    logits = m(src, tgt)
    assert logits.shape == (3, 4, 11)
    # causal: changing the last target token leaves earlier positions unchanged
    tgt2 = tgt.clone()
    tgt2[:, -1] = (tgt[:, -1] % 10) + 1
    torch.testing.assert_close(m(src, tgt2)[:, :-1], logits[:, :-1])
    assert not torch.allclose(m(src, tgt2)[:, -1], logits[:, -1])
    # padding: extra padded source positions change nothing
    padded = torch.cat([src, torch.zeros(3, 2, dtype=torch.long)], dim=1)
    torch.testing.assert_close(m(padded, tgt), logits)


def test_seq2seq_embedding_is_scaled_and_positioned():
    m = _model()
    tokens = torch.tensor([[3, 4, 5]])
    expected = m.src_embed.weight[tokens[0]] * 4.0 + sinusoidal_positional_encoding(12, 16)[:3]
    torch.testing.assert_close(m._embed(m.src_embed, tokens)[0], expected)


def test_greedy_decode_is_the_argmax_of_teacher_forcing(generator):
    m = _model()
    src = torch.randint(1, 9, (4, 5), generator=generator)
    out = m.greedy_decode(src, max_len=6, bos_idx=1)
    assert out.shape == (4, 6) and out.dtype == torch.long
    tgt_in = torch.cat([torch.ones(4, 1, dtype=torch.long), out[:, :-1]], dim=1)
    assert torch.equal(m(src, tgt_in).argmax(-1), out)


def test_greedy_decode_pads_after_eos(generator):
    m = _model()
    src = torch.randint(1, 9, (3, 5), generator=generator)
    free = m.greedy_decode(src, max_len=6, bos_idx=1)
    eos = int(free[0, 1])  # pretend the second token of row 0 is the end-of-sequence token
    out = m.greedy_decode(src, max_len=6, bos_idx=1, eos_idx=eos)
    assert out.shape == (3, 6)
    for free_row, row in zip(free.tolist(), out.tolist()):
        end = free_row.index(eos) + 1 if eos in free_row else 6
        assert row[:end] == free_row[:end] and all(t == 0 for t in row[end:])  # pad_idx = 0 after EOS
    assert (out[0, 2:] == 0).all() or int(free[0, 0]) == eos
    assert m.training is False


def test_seq2seq_trains_on_a_tiny_copy_task():
    torch.manual_seed(0)
    m = Seq2SeqTransformer(6, 6, d_model=16, num_heads=2, dim_feedforward=32, max_len=8, norm_first=True)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(2, 6, (64, 4), generator=g)
    tgt_in = torch.cat([torch.ones(64, 1, dtype=torch.long), src[:, :-1]], dim=1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds synchronization
    try:
        for _ in range(150):
            loss = F.cross_entropy(m(src, tgt_in).reshape(-1, 6), src.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    token_accuracy = (m.greedy_decode(src, 4, bos_idx=1) == src).float().mean().item()
    assert token_accuracy > 0.95  # an untrained model scores about 1/4


def test_seq2seq_bad_inputs():
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer: pad_idx must be a token of both vocabularies, in \[0, 5\); got 7"):
        Seq2SeqTransformer(5, 8, pad_idx=7)
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer: d_model must be divisible by num_heads; got 30 and 4"):
        Seq2SeqTransformer(5, 5, d_model=30)
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer: d_model must be even for the sinusoidal encoding; got 3"):
        Seq2SeqTransformer(5, 5, d_model=3, num_heads=1)
    m = _model()
    src = torch.randint(1, 9, (2, 5))
    with pytest.raises(TypeError, match=r"Seq2SeqTransformer.encode: src must be a tensor of token ids \(torch.long\)"):
        m.encode(src.float())
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer.encode: src ids must be in \[0, 9\); got min 1, max 9"):
        m.encode(torch.tensor([[1, 9]]))
    with pytest.raises(ValueError, match=r"src is longer than max_len=12; got length 13"):
        m.encode(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer.decode: tgt must have shape \(N, length ≥ 1\); got \(5,\)"):
        m(src, torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"greedy_decode: max_len \+ 1 \(with BOS\) must be ≤ 12; got 13"):
        m.greedy_decode(src, 12, bos_idx=1)
    with pytest.raises(ValueError, match=r"greedy_decode: eos_idx must be in \[0, 11\); got 11"):
        m.greedy_decode(src, 4, bos_idx=1, eos_idx=11)
    with pytest.raises(TypeError, match=r"greedy_decode: bos_idx must be an int; got float"):
        m.greedy_decode(src, 4, bos_idx=1.0)


def test_load_torch_weights_validates():
    with pytest.raises(TypeError, match=r"load_torch_weights: ref must be MultiheadAttention; got Linear"):
        load_torch_weights(MultiHeadAttention(8, 2), nn.Linear(8, 8))
    with pytest.raises(ValueError, match=r"load_torch_weights: ref must have embed_dim 8 and num_heads 2; got 8 and 4"):
        load_torch_weights(MultiHeadAttention(8, 2), nn.MultiheadAttention(8, 4))
    with pytest.raises(TypeError, match=r"load_torch_weights: ours must be MultiHeadAttention or TransformerEncoderLayer"):
        load_torch_weights(nn.Linear(2, 2), nn.Linear(2, 2))


# ---------------------------------------------------------------- noam_lr
def test_noam_lr_formula_peak_and_lambda_lr():
    from dlkb.transformer import noam_lr

    # The formula, written out for a few steps on both sides of the warm-up.
    for s in (1, 10, 3999, 4000, 4001, 100_000):
        want = 512**-0.5 * min(s**-0.5, s * 4000**-1.5)
        assert noam_lr(s, d_model=512) == pytest.approx(want, rel=1e-12)
    assert noam_lr(4000, d_model=512) == pytest.approx(1 / math.sqrt(512 * 4000), rel=1e-12)  # the peak
    assert max(noam_lr(s, d_model=512) for s in range(1, 20_000, 7)) <= noam_lr(4000, d_model=512)
    assert noam_lr(8, d_model=64, warmup_steps=4, factor=2.0) == pytest.approx(2 * 64**-0.5 * 8**-0.5)
    # Through torch's LambdaLR with base lr 1 (its epoch counter starts at 0).
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: noam_lr(e + 1, d_model=16, warmup_steps=10))
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([noam_lr(s, d_model=16, warmup_steps=10) for s in range(1, 31)], rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"step": 0, "d_model": 512}, ValueError, r"noam_lr: step must be >= 1; got 0"),
        ({"step": 1.0, "d_model": 512}, TypeError, r"noam_lr: step must be an int; got float"),
        ({"step": 1, "d_model": 0}, ValueError, r"noam_lr: d_model must be >= 1; got 0"),
        ({"step": 1, "d_model": 512, "warmup_steps": 0}, ValueError, r"noam_lr: warmup_steps must be >= 1; got 0"),
        ({"step": 1, "d_model": 512, "factor": 0.0}, ValueError, r"noam_lr: factor must be > 0; got 0.0"),
        ({"step": 1, "d_model": 512, "factor": "2"}, TypeError, r"noam_lr: factor must be a real number; got str"),
    ],
)
def test_noam_lr_validation(kwargs, exc, match):
    from dlkb.transformer import noam_lr

    step = kwargs.pop("step")
    with pytest.raises(exc, match=match):
        noam_lr(step, **kwargs)


# ---------------------------------------------------------------- key/value cache
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("pad_idx", [None, 0])
def test_kv_cache_gives_the_same_logits_and_tokens(norm_first, pad_idx):
    from dlkb.transformer import Seq2SeqTransformer

    torch.manual_seed(0)
    model = Seq2SeqTransformer(12, 13, d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                               dim_feedforward=24, max_len=20, pad_idx=pad_idx, norm_first=norm_first).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(1, 12, (5, 7), generator=g)
    if pad_idx is not None:
        src[0, 5:] = pad_idx
    tgt = torch.randint(1, 13, (5, 9), generator=g)
    if pad_idx is not None:
        tgt[1, 6:] = pad_idx
    with torch.no_grad():
        memory = model.encode(src)
        full = model.decode(tgt, memory, src)  # [N, L, V]
        cache = None
        for t in range(1, tgt.shape[1] + 1):
            logits, cache = model.decode_step(tgt[:, :t], memory, src, cache)
            torch.testing.assert_close(logits, full[:, t - 1], atol=1e-5, rtol=1e-5)
    assert len(cache) == 2 and cache[0][0].shape == (5, 2, 9, 8)
    a = model.greedy_decode(src, 15, bos_idx=11, eos_idx=12)
    b = model.greedy_decode(src, 15, bos_idx=11, eos_idx=12, use_cache=True)
    assert torch.equal(a, b)
    assert torch.equal(model.greedy_decode(src, 15, bos_idx=11), model.greedy_decode(src, 15, bos_idx=11, use_cache=True))


def test_kv_cache_validation():
    from dlkb.transformer import Seq2SeqTransformer

    model = Seq2SeqTransformer(5, 6, d_model=8, num_heads=2, max_len=10).eval()
    src = torch.randint(0, 5, (2, 4))
    memory = model.encode(src)
    _, cache = model.decode_step(torch.zeros(2, 1, dtype=torch.long), memory, src, None)
    with pytest.raises(ValueError, match=r"decode_step: the cache holds 1 positions, but tokens has 3 \(expected 2\)"):
        model.decode_step(torch.zeros(2, 3, dtype=torch.long), memory, src, cache)
    with pytest.raises(ValueError, match=r"decode_step: cache must be None or the list returned by the previous step"):
        model.decode_step(torch.zeros(2, 2, dtype=torch.long), memory, src, "cache")
    with pytest.raises(TypeError, match=r"decode_step: tokens must be a tensor of token ids"):
        model.decode_step(torch.zeros(2, 2), memory, src, None)
    with pytest.raises(TypeError, match=r"greedy_decode: use_cache must be a bool; got int"):
        model.greedy_decode(src, 3, bos_idx=1, use_cache=1)


# ---------------------------------------------------------------- learned positions, activation
def test_learned_positions_are_a_trained_parameter_used_everywhere(generator):
    torch.manual_seed(0)
    m = Seq2SeqTransformer(9, 11, d_model=15, num_heads=3, dim_feedforward=16, max_len=12, positional="learned").eval()
    assert isinstance(m.pe, nn.Parameter) and m.pe.shape == (12, 15)  # odd d_model is fine without sinusoids
    assert "pe" in dict(m.named_parameters())
    tokens = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(m._embed(m.src_embed, tokens)[0], m.src_embed.weight[tokens[0]] * math.sqrt(15) + m.pe[:3])
    src = torch.randint(0, 9, (2, 5), generator=generator)
    tgt = torch.randint(0, 11, (2, 4), generator=generator)
    m(src, tgt).sum().backward()
    assert m.pe.grad is not None and m.pe.grad[:5].abs().sum() > 0 and m.pe.grad[5:].abs().sum() == 0
    # the KV cache reads the same learned positions
    assert torch.equal(m.greedy_decode(src, 6, bos_idx=1), m.greedy_decode(src, 6, bos_idx=1, use_cache=True))
    sinus = Seq2SeqTransformer(9, 11, d_model=16, num_heads=2, max_len=12)
    assert "pe" not in dict(sinus.named_parameters()) and "pe" in dict(sinus.named_buffers())
    with pytest.raises(ValueError, match=r"Seq2SeqTransformer: positional must be one of \('sinusoidal', 'learned'\); got 'rope'"):
        Seq2SeqTransformer(9, 11, positional="rope")
    with pytest.raises(TypeError, match=r"Seq2SeqTransformer: positional must be a str, one of .*; got NoneType"):
        Seq2SeqTransformer(9, 11, positional=None)


def test_encoder_layer_gelu_and_eps_match_torch(generator):
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
                                     batch_first=True, norm_first=True).eval()
    ours = TransformerEncoderLayer(8, 2, 16, norm_first=True, activation="gelu", layer_norm_eps=1e-6).eval()
    load_torch_weights(ours, ref)
    x = torch.randn(3, 5, 8, generator=generator)
    torch.testing.assert_close(ours(x), ref(x))
    assert ours.norm1.eps == 1e-6
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: activation must be one of \('relu', 'gelu'\); got 'tanh'"):
        TransformerEncoderLayer(8, 2, 16, activation="tanh")
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: layer_norm_eps must be > 0; got 0"):
        TransformerEncoderLayer(8, 2, 16, layer_norm_eps=0)


# ---------------------------------------------------------------- Vision Transformer
from dlkb.transformer import PatchEmbedding, VisionTransformer, patchify  # noqa: E402


def test_patchify_matches_unfold_and_the_conv_projection(generator):
    x = torch.randn(2, 3, 8, 12, generator=generator)
    patches = patchify(x, 4)  # [N, M, C·P·P]
    assert patches.shape == (2, 6, 48)
    torch.testing.assert_close(patches, F.unfold(x, kernel_size=4, stride=4).transpose(1, 2))
    torch.testing.assert_close(patches[1, 4], x[1, :, 4:8, 4:8].reshape(-1))  # row 1, column 1 of the 2×3 grid
    emb = PatchEmbedding(3, 4, 5)
    conv = nn.Conv2d(3, 5, 4, stride=4)
    with torch.no_grad():
        emb.proj.weight.copy_(conv.weight.reshape(5, -1))
        emb.proj.bias.copy_(conv.bias)
    torch.testing.assert_close(emb(x), conv(x).flatten(2).transpose(1, 2))
    # non-contiguous input, empty batch
    xt = torch.randn(2, 3, 12, 8, generator=generator).transpose(2, 3)
    assert not xt.is_contiguous()
    torch.testing.assert_close(emb(xt), conv(xt).flatten(2).transpose(1, 2))
    assert emb(torch.zeros(0, 3, 8, 8)).shape == (0, 4, 5)


def test_patch_embedding_gradcheck(generator):
    emb = PatchEmbedding(2, 2, 3).double()
    x = torch.randn(2, 2, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(emb, (x,))
    conv = nn.Conv2d(2, 3, 2, stride=2).double()
    with torch.no_grad():
        emb.proj.weight.copy_(conv.weight.reshape(3, -1))
        emb.proj.bias.copy_(conv.bias)
    g_ours = torch.autograd.grad(emb(x).square().sum(), x)[0]
    g_conv = torch.autograd.grad(conv(x).flatten(2).transpose(1, 2).square().sum(), x)[0]
    torch.testing.assert_close(g_ours, g_conv)


def _vit_pair(in_channels=3, layers=2):
    from torchvision.models.vision_transformer import VisionTransformer as TorchViT

    torch.manual_seed(0)
    ref = TorchViT(image_size=8, patch_size=2, num_layers=layers, num_heads=4, hidden_dim=16, mlp_dim=24, num_classes=10)
    with torch.no_grad():  # torchvision zero-initialises the head and the class token: make them non-trivial
        ref.heads.head.weight.normal_()
        ref.class_token.normal_()
    ours = VisionTransformer(8, 2, in_channels, 10, d_model=16, num_heads=4, num_layers=layers, dim_feedforward=24)
    return ours.eval(), ref.eval()


def test_vision_transformer_matches_torchvision_in_value_and_gradient(generator):
    ours, ref = _vit_pair()
    load_torch_weights(ours, ref)
    x = torch.randn(4, 3, 8, 8, generator=generator)
    out, want = ours(x), ref(x)
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, want)
    # gradients with respect to the input and to every copied weight
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours(xa).square().sum().backward()
    ref(xb).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.patch_embed.proj.weight.grad, ref.conv_proj.weight.grad.reshape(16, -1))
    torch.testing.assert_close(ours.pos_embedding.grad, ref.encoder.pos_embedding.grad)
    torch.testing.assert_close(ours.class_token.grad, ref.class_token.grad)
    torch.testing.assert_close(ours.layers[1].linear1.weight.grad, ref.encoder.layers[1].mlp[0].weight.grad)
    # non-contiguous input
    xt = x.transpose(2, 3)
    torch.testing.assert_close(ours(xt), ref(xt.contiguous()))


def test_vision_transformer_encoder_matches_torchvision_for_one_channel(generator):
    ours, ref = _vit_pair(in_channels=1)
    load_torch_weights(ours, ref.encoder)  # the encoder compares for any number of channels
    tokens = torch.randn(3, 17, 16, generator=generator)
    torch.testing.assert_close(ours.encode(tokens), ref.encoder(tokens))
    with pytest.raises(ValueError, match=r"load_torch_weights: torchvision's VisionTransformer has 3 input channels and patch size 2; ours has 1 and 2"):
        load_torch_weights(ours, ref)


def test_vision_transformer_gradcheck(generator):
    torch.manual_seed(0)
    vit = VisionTransformer(4, 2, 1, 3, d_model=4, num_heads=2, num_layers=1, dim_feedforward=6).double()
    x = torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(vit, (x,))


def test_vision_transformer_learns_class_token_and_positions():
    vit = VisionTransformer(8, 4, 1, 10)
    names = dict(vit.named_parameters())
    assert names["class_token"].shape == (1, 1, 32) and names["pos_embedding"].shape == (1, 5, 32)
    assert (names["class_token"] == 0).all() and 0.01 < names["pos_embedding"].std() < 0.04
    assert vit.layers[0].norm_first and vit.layers[0].activation == "gelu" and vit.norm.eps == 1e-6


@pytest.mark.parametrize(
    ("build", "exc", "match"),
    [
        (lambda: VisionTransformer(8, 3, 1, 10), ValueError, r"VisionTransformer: patch_size must divide image_size; got 3 and 8"),
        (lambda: VisionTransformer(8, 2, 1, 0), ValueError, r"VisionTransformer: num_classes must be >= 1; got 0"),
        (lambda: VisionTransformer(8, 2, 1, 10, d_model=30), ValueError, r"VisionTransformer: d_model must be divisible by num_heads; got 30 and 4"),
        (lambda: VisionTransformer(8.0, 2, 1, 10), TypeError, r"VisionTransformer: image_size must be an int; got float"),
        (lambda: PatchEmbedding(0, 2, 4), ValueError, r"PatchEmbedding: in_channels must be >= 1; got 0"),
        (lambda: VisionTransformer(8, 2, 1, 10)(torch.zeros(2, 1, 6, 6)), ValueError, r"VisionTransformer.forward: images must be 8×8; got shape \(2, 1, 6, 6\)"),
        (lambda: VisionTransformer(8, 2, 1, 10)(torch.zeros(2, 8, 8)), ValueError, r"VisionTransformer.forward: images must be 4-D; got shape \(2, 8, 8\)"),
        (lambda: VisionTransformer(8, 2, 1, 10)(torch.zeros(2, 1, 8, 8, dtype=torch.long)), TypeError, r"VisionTransformer.forward: images must be a floating-point tensor; got dtype torch.int64"),
        (lambda: PatchEmbedding(1, 2, 4)(torch.zeros(2, 3, 8, 8)), ValueError, r"PatchEmbedding.forward: images must have in_channels=1 channels \(dim 1\); got shape \(2, 3, 8, 8\)"),
        (lambda: patchify(torch.zeros(1, 1, 6, 8), 4), ValueError, r"patchify: the image size \(H, W\) must be multiples of patch_size=4; got \(6, 8\)"),
        (lambda: patchify(torch.zeros(1, 1, 8, 8), 0), ValueError, r"patchify: patch_size must be >= 1; got 0"),
        (lambda: VisionTransformer(8, 2, 1, 10).encode(torch.zeros(2, 16, 32)), ValueError, r"VisionTransformer.encode: tokens must have shape \(N, 17, 32\); got \(2, 16, 32\)"),
        (lambda: load_torch_weights(VisionTransformer(8, 2, 1, 10), nn.Linear(2, 2)), TypeError, r"load_torch_weights: ref must be VisionTransformer or Encoder; got Linear"),
        (lambda: load_torch_weights(*_vit_pair(layers=1)[:1], _vit_pair(layers=2)[1]), ValueError, r"load_torch_weights: ref must have 1 layers and positions of shape \(1, 17, 16\); got 2 and \(1, 17, 16\)"),
    ],
)
def test_vision_transformer_validation(build, exc, match):
    with pytest.raises(exc, match=match):
        build()
