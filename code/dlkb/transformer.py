r"""The Transformer: scaled dot-product attention, multi-head attention, encoder and decoder layers.

Everything is built from elementary operations (``matmul``, ``softmax``, ``nn.Linear``,
``nn.LayerNorm``); torch's own attention is used only in the tests, as the reference.

Shape letters: N batch, L target (query) length, S source (key/value) length,
E embedding size (``d_model``), H heads, D = E / H size per head, V vocabulary size.

Mask convention (the same as ``F.scaled_dot_product_attention``): a **boolean** mask,
``True`` = this query may attend to this key. ``nn.MultiheadAttention``'s
``key_padding_mask`` and boolean ``attn_mask`` use the opposite convention
(``True`` = ignore). A query row whose keys are all masked gets zero weights and a
zero output here (as in ``F.scaled_dot_product_attention``), not NaN.

Papers:
    Vaswani et al. 2017, "Attention Is All You Need" (NeurIPS): Eq. (1) attention,
    Sec. 3.2.2 multi-head attention, Sec. 3.5 positional encoding, Sec. 3.1 and 5.4 the
    encoder/decoder layers with residual dropout and post-norm.
    Ba et al. 2016, "Layer Normalization".
    Pre-norm (layer norm at the start of the residual branch) was used in implementations
    such as tensor2tensor (Vaswani et al. 2018) before Xiong et al. 2020, "On Layer
    Normalization in the Transformer Architecture", analysed it (they did not introduce it).
    Gehring et al. 2017, "Convolutional Sequence to Sequence Learning" (ICML): learned
    positional embeddings, the alternative of Vaswani et al.'s Table 3 row (E).
    Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (ICLR): the Vision
    Transformer, Eqs. (1)-(4): patch embedding, class token, learned positions, pre-norm
    encoder with GELU MLPs, a final LayerNorm and a linear head on the class token.

Images (Vision Transformer): N batch, C channels, H and W height and width, P patch size,
M = (H / P) · (W / P) patches, K classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlkb import _validate as _v
from dlkb.utils import eval_mode

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "sinusoidal_positional_encoding",
    "noam_lr",
    "MultiHeadAttention",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "Seq2SeqTransformer",
    "patchify",
    "PatchEmbedding",
    "VisionTransformer",
    "load_torch_weights",
]


def _check_float_tensor(name: str, value: object, caller: str, min_ndim: int) -> None:
    _v.tensor(name, value, caller=caller, dtype="floating")
    if value.ndim < min_ndim:
        raise ValueError(f"{caller}: {name} must have at least {min_ndim} dimensions; got shape {tuple(value.shape)}")


def _check_mask(mask: object, target: tuple[int, ...], caller: str, name: str = "mask") -> None:
    """A boolean tensor that broadcasts to ``target`` without growing ``target``."""
    _v.instance(name, mask, caller=caller, types=torch.Tensor)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{caller}: {name} must be a boolean tensor (True = may attend); got dtype {mask.dtype}. "
            "Convert an additive float mask with `mask == 0`."
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, target)
    except RuntimeError:
        shape = None
    if shape != torch.Size(target):
        raise ValueError(f"{caller}: {name} of shape {tuple(mask.shape)} does not broadcast to {tuple(target)}")


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention, Vaswani et al. 2017, Eq. (1).

    .. math::
        \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt{d_k}}\Big)V

    Masked scores are excluded from the softmax. A query whose keys are all masked gets
    zero weights and a zero output (``F.scaled_dot_product_attention`` does the same;
    a plain ``-inf`` fill would give NaN).

    Args:
        q (Tensor[..., L, E]): queries.
        k (Tensor[..., S, E]): keys; leading dimensions broadcast with ``q``'s.
        v (Tensor[..., S, Ev]): values.
        mask (Tensor[..., L, S] of bool, optional): ``True`` = the query may attend to
            the key; must broadcast to the shape of the scores ``(..., L, S)``.

    Returns:
        ``(output, weights)``: output (Tensor[..., L, Ev]) and the attention weights
        (Tensor[..., L, S]), each row summing to 1 (or 0 for a fully masked row).

    Raises:
        TypeError: if an input is not a floating-point tensor, or the mask is not boolean.
        ValueError: on mismatched sizes or a mask that does not broadcast.
    """
    caller = "scaled_dot_product_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_float_tensor(name, t, caller, 2)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{caller}: q and k must have the same embedding size E (last dim); got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{caller}: k and v must have the same length S (dim -2); got {k.shape[-2]} and {v.shape[-2]}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{caller}: q, k and v must have the same dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"{caller}: the leading (batch) dimensions of q, k and v must broadcast; got "
            f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}"
        ) from None
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., L, S]
    if mask is None:
        weights = torch.softmax(scores, dim=-1)  # [..., L, S]
        return weights @ v, weights
    _check_mask(mask, (*batch, q.shape[-2], k.shape[-2]), caller)
    # The most negative finite number, not -inf: a fully masked row then softmaxes to a
    # uniform row (no NaN, also none in the backward pass), which the second fill zeroes.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)  # [..., L, S]
    return weights @ v, weights


def causal_mask(size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Causal (look-ahead) mask: position ``i`` may attend to positions ``j <= i``.

    Args:
        size: the sequence length L.
        device: where to create the mask (the CPU by default).

    Returns:
        Tensor[L, L] of bool, ``True`` on and below the diagonal.
    """
    _v.integer("size", size, caller="causal_mask", minimum=1)
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def sinusoidal_positional_encoding(max_len: int, d_model: int) -> torch.Tensor:
    r"""Sinusoidal positional encoding, Vaswani et al. 2017, Sec. 3.5.

    .. math::
        PE_{(pos, 2i)} = \sin\big(pos / 10000^{2i/d_{model}}\big), \qquad
        PE_{(pos, 2i+1)} = \cos\big(pos / 10000^{2i/d_{model}}\big)

    Args:
        max_len: number of positions (rows), positions 0 … max_len − 1.
        d_model: encoding size; must be even (sine and cosine come in pairs).

    Returns:
        Tensor[max_len, d_model] (float32).
    """
    caller = "sinusoidal_positional_encoding"
    _v.integer("max_len", max_len, caller=caller, minimum=1)
    _v.integer("d_model", d_model, caller=caller, minimum=1)
    if d_model % 2:
        raise ValueError(f"{caller}: d_model must be even (sin/cos pairs); got {d_model}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # [L, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # [E/2]
    angle = pos / 10000.0 ** (two_i / d_model)  # [L, E/2]
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()


def noam_lr(step: int, *, d_model: int, warmup_steps: int = 4000, factor: float = 1.0) -> float:
    r"""The learning-rate schedule of Vaswani et al. 2017, Sec. 5.3, Eq. (3).

    .. math::
        \text{lr}(s) = \text{factor}\cdot d_{model}^{-0.5}\cdot
        \min\big(s^{-0.5},\ s\cdot \text{warmup\_steps}^{-1.5}\big), \qquad s \ge 1.

    Linear warm-up for ``warmup_steps`` steps, then decay proportional to
    :math:`1/\sqrt{s}`; the peak, at :math:`s = \text{warmup\_steps}`, is
    :math:`\text{factor}/\sqrt{d_{model}\cdot\text{warmup\_steps}}` (7.0e-4 for the
    paper's :math:`d_{model} = 512`, 4000 warm-up steps). The paper used it with Adam
    (:math:`\beta_1 = 0.9, \beta_2 = 0.98, \epsilon = 10^{-9}`). With
    ``torch.optim.lr_scheduler.LambdaLR`` (whose counter starts at 0) pass
    ``lambda e: noam_lr(e + 1, ...)`` and a base learning rate of 1.

    Args:
        step: s, the 1-based step number.
        d_model: model width.
        warmup_steps: length of the warm-up.
        factor: a constant multiplier (1 in the paper).

    Returns:
        The learning rate (a float).
    """
    caller = "noam_lr"
    step = _v.integer("step", step, caller=caller, minimum=1)
    d_model = _v.integer("d_model", d_model, caller=caller, minimum=1)
    warmup_steps = _v.integer("warmup_steps", warmup_steps, caller=caller, minimum=1)
    factor = _v.real("factor", factor, caller=caller, low=0.0, low_open=True)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention, Vaswani et al. 2017, Sec. 3.2.2 (batch first).

    .. math::
        \operatorname{MultiHead}(Q, K, V) = \operatorname{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_H) W^O,
        \quad \mathrm{head}_h = \operatorname{Attention}(Q W^Q_h, K W^K_h, V W^V_h)

    The H projections of size D = E / H are computed by one ``nn.Linear(E, E)`` each
    and split into heads by a reshape: (N, L, E) → (N, L, H, D) → (N, H, L, D).

    Args:
        d_model: embedding size E.
        num_heads: number of heads H; must divide ``d_model``.
        bias: whether the four projections have a bias.
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        caller = "MultiHeadAttention"
        _v.integer("d_model", d_model, caller=caller, minimum=1)
        _v.integer("num_heads", num_heads, caller=caller, minimum=1)
        _v.boolean("bias", bias, caller=caller)
        if d_model % num_heads:
            raise ValueError(f"{caller}: d_model must be divisible by num_heads; got {d_model} and {num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads  # D
        self.w_q = nn.Linear(d_model, d_model, bias=bias)  # W^Q of all heads side by side
        self.w_k = nn.Linear(d_model, d_model, bias=bias)  # W^K
        self.w_v = nn.Linear(d_model, d_model, bias=bias)  # W^V
        self.w_o = nn.Linear(d_model, d_model, bias=bias)  # W^O

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query (Tensor[N, L, E]): queries.
            key (Tensor[N, S, E]): keys.
            value (Tensor[N, S, E]): values.
            mask (Tensor of bool, optional): ``True`` = may attend. Shape (L, S) for all
                sequences, (N, L, S) or (N, 1, S) per sequence (a padding mask), or
                anything that broadcasts to (N, H, L, S).

        Returns:
            ``(output, weights)``: Tensor[N, L, E] and Tensor[N, H, L, S].
        """
        caller = "MultiHeadAttention.forward"
        for name, t in (("query", query), ("key", key), ("value", value)):
            _check_float_tensor(name, t, caller, 3)
            if t.ndim != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{caller}: {name} must have shape (N, length, d_model={self.d_model}); got {tuple(t.shape)}"
                )
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"{caller}: key and value must have the same (N, S); got {tuple(key.shape)} and {tuple(value.shape)}"
            )
        if query.shape[0] != key.shape[0]:
            raise ValueError(
                f"{caller}: query and key must have the same batch size N; got {query.shape[0]} and {key.shape[0]}"
            )
        n, l, _ = query.shape  # N, L, E
        s = key.shape[1]  # S
        h, d = self.num_heads, self.head_dim
        if mask is not None:
            _v.instance("mask", mask, caller=caller, types=torch.Tensor)
            if mask.ndim == 3:  # (N, L, S) or (N, 1, S): one mask per sequence, shared by the heads
                mask = mask.unsqueeze(1)  # [N, 1, L|1, S]
            _check_mask(mask, (n, h, l, s), caller)
        q = self.w_q(query).reshape(n, l, h, d).transpose(1, 2)  # [N, H, L, D]
        k = self.w_k(key).reshape(n, s, h, d).transpose(1, 2)  # [N, H, S, D]
        v = self.w_v(value).reshape(n, s, h, d).transpose(1, 2)  # [N, H, S, D]
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # [N, H, L, D], [N, H, L, S]
        out = out.transpose(1, 2).reshape(n, l, h * d)  # [N, L, E]; reshape copies the non-contiguous view
        return self.w_o(out), weights


def load_torch_weights(ours: nn.Module, ref: nn.Module) -> None:
    """Copy the weights of a PyTorch attention module or Transformer layer into ours.

    ``nn.MultiheadAttention`` keeps W_q, W_k, W_v stacked in one ``in_proj_weight``
    [3E, E] (and ``in_proj_bias`` [3E]); :class:`MultiHeadAttention` keeps three
    ``nn.Linear``. The encoder and decoder layers use torch's sub-module names
    (``linear1``, ``linear2``, ``norm1``...; the decoder's cross-attention is
    ``multihead_attn`` in torch and ``cross_attn`` here).

    A :class:`VisionTransformer` takes the weights of torchvision's
    ``VisionTransformer`` (then ``in_channels`` must be 3, as torchvision's ``conv_proj``
    has 3 input channels; its weight ``(E, 3, P, P)`` becomes our ``(E, 3·P·P)`` patch
    projection) or of its ``encoder`` alone (``vision_transformer.Encoder``: positions,
    layers, final LayerNorm), whatever our ``in_channels``. torchvision's encoder blocks
    name their parts ``ln_1``, ``self_attention``, ``ln_2``, ``mlp.0``, ``mlp.3``.

    Args:
        ours: a :class:`MultiHeadAttention`, :class:`TransformerEncoderLayer`,
            :class:`TransformerDecoderLayer` or :class:`VisionTransformer`.
        ref: the matching ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``,
            ``nn.TransformerDecoderLayer``, or torchvision ``VisionTransformer`` /
            ``Encoder``, of the same sizes.
    """
    caller = "load_torch_weights"
    if isinstance(ours, VisionTransformer):
        _load_torchvision_vit(ours, ref, caller)
        return
    pairs = {
        MultiHeadAttention: nn.MultiheadAttention,
        TransformerEncoderLayer: nn.TransformerEncoderLayer,
        TransformerDecoderLayer: nn.TransformerDecoderLayer,
    }
    _v.instance("ours", ours, caller=caller, types=(*pairs, VisionTransformer))
    expected = pairs[type(ours)]
    _v.instance("ref", ref, caller=caller, types=expected)
    with torch.no_grad():
        if isinstance(ours, MultiHeadAttention):
            if ref.embed_dim != ours.d_model or ref.num_heads != ours.num_heads:
                raise ValueError(
                    f"{caller}: ref must have embed_dim {ours.d_model} and num_heads {ours.num_heads}; "
                    f"got {ref.embed_dim} and {ref.num_heads}"
                )
            for lin, w, b in zip((ours.w_q, ours.w_k, ours.w_v), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
                lin.weight.copy_(w)  # each [E, E]
                lin.bias.copy_(b)
            ours.w_o.weight.copy_(ref.out_proj.weight)
            ours.w_o.bias.copy_(ref.out_proj.bias)
            return
        load_torch_weights(ours.self_attn, ref.self_attn)
        if isinstance(ours, TransformerDecoderLayer):
            load_torch_weights(ours.cross_attn, ref.multihead_attn)
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            if hasattr(ref, name):
                getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())


_ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu}


def _load_torchvision_vit(ours: "VisionTransformer", ref: nn.Module, caller: str) -> None:
    from torchvision.models import vision_transformer as tv  # noqa: PLC0415

    _v.instance("ref", ref, caller=caller, types=(tv.VisionTransformer, tv.Encoder))
    encoder = ref.encoder if isinstance(ref, tv.VisionTransformer) else ref
    if tuple(encoder.pos_embedding.shape) != tuple(ours.pos_embedding.shape) or len(encoder.layers) != len(ours.layers):
        raise ValueError(
            f"{caller}: ref must have {len(ours.layers)} layers and positions of shape "
            f"{tuple(ours.pos_embedding.shape)}; got {len(encoder.layers)} and {tuple(encoder.pos_embedding.shape)}"
        )
    with torch.no_grad():
        ours.pos_embedding.copy_(encoder.pos_embedding)
        for layer, block in zip(ours.layers, encoder.layers):
            load_torch_weights(layer.self_attn, block.self_attention)
            for mine, theirs in ((layer.norm1, block.ln_1), (layer.norm2, block.ln_2),
                                 (layer.linear1, block.mlp[0]), (layer.linear2, block.mlp[3])):
                mine.load_state_dict(theirs.state_dict())
        ours.norm.load_state_dict(encoder.ln.state_dict())
        if isinstance(ref, tv.Encoder):
            return
        conv = ref.conv_proj  # Conv2d(3, E, P, stride=P)
        if ours.patch_embed.in_channels != conv.in_channels or ours.patch_embed.patch_size != ref.patch_size:
            raise ValueError(
                f"{caller}: torchvision's VisionTransformer has {conv.in_channels} input channels and patch size "
                f"{ref.patch_size}; ours has {ours.patch_embed.in_channels} and {ours.patch_embed.patch_size} "
                "(compare the encoder alone with ref.encoder)"
            )
        ours.patch_embed.proj.weight.copy_(conv.weight.reshape(conv.out_channels, -1))  # [E, C·P·P]
        ours.patch_embed.proj.bias.copy_(conv.bias)
        ours.class_token.copy_(ref.class_token)
        ours.head.load_state_dict(ref.heads.head.state_dict())


def _check_layer_args(
    caller: str,
    d_model: int,
    num_heads: int,
    dim_feedforward: int,
    dropout: float,
    norm_first: bool,
    activation: str = "relu",
    layer_norm_eps: float = 1e-5,
):
    _v.choice("activation", activation, caller=caller, choices=tuple(_ACTIVATIONS))
    _v.real("layer_norm_eps", layer_norm_eps, caller=caller, low=0.0, low_open=True)
    _v.integer("d_model", d_model, caller=caller, minimum=1)
    _v.integer("num_heads", num_heads, caller=caller, minimum=1)
    _v.integer("dim_feedforward", dim_feedforward, caller=caller, minimum=1)
    _v.real("dropout", dropout, caller=caller, low=0.0, high=1.0, high_open=True)
    _v.boolean("norm_first", norm_first, caller=caller)
    if d_model % num_heads:
        raise ValueError(f"{caller}: d_model must be divisible by num_heads; got {d_model} and {num_heads}")


class TransformerEncoderLayer(nn.Module):
    r"""One encoder layer: self-attention and feed-forward, each with a residual connection.

    Post-norm (the paper, Sec. 3.1): ``x = LN(x + Dropout(Sublayer(x)))``.
    Pre-norm (``norm_first=True``, Xiong et al. 2020): ``x = x + Dropout(Sublayer(LN(x)))``;
    a stack of pre-norm layers needs one more LayerNorm at its end.

    Submodules follow ``nn.TransformerEncoderLayer`` (``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``), so weights copy over one to one. Dropout is
    applied to each sub-layer's output (the paper's residual dropout, Sec. 5.4) and,
    as in torch, inside the feed-forward network.

    Args:
        d_model: embedding size E.
        num_heads: number of attention heads H.
        dim_feedforward: hidden size of the feed-forward network.
        dropout: dropout probability.
        norm_first: pre-norm if True, post-norm (default) if False.
        activation: ``"relu"`` (the paper) or ``"gelu"`` (the Vision Transformer).
        layer_norm_eps: the ``eps`` of the LayerNorms (1e-5 as in torch; the Vision
            Transformer uses 1e-6).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_layer_args(
            "TransformerEncoderLayer", d_model, num_heads, dim_feedforward, dropout, norm_first, activation, layer_norm_eps
        )
        self.norm_first = norm_first
        self.activation = activation
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _sa(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout(self.self_attn(x, x, x, mask)[0])

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x)))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor[N, S, E] → Tensor[N, S, E]; ``mask`` as in :class:`MultiHeadAttention` (True = attend)."""
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self._ff(x))


class TransformerDecoderLayer(nn.Module):
    r"""One decoder layer: masked self-attention, cross-attention to the encoder output, feed-forward.

    Same residual/LayerNorm arrangement as :class:`TransformerEncoderLayer`, with three
    sub-layers (Vaswani et al. 2017, Sec. 3.1). Submodules follow
    ``nn.TransformerDecoderLayer`` except that its ``multihead_attn`` is called
    ``cross_attn`` here.

    Args:
        d_model: embedding size E.
        num_heads: number of attention heads H.
        dim_feedforward: hidden size of the feed-forward network.
        dropout: dropout probability.
        norm_first: pre-norm if True, post-norm (default) if False.
    """

    def __init__(
        self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__()
        _check_layer_args("TransformerDecoderLayer", d_model, num_heads, dim_feedforward, dropout, norm_first)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def _sa(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout(self.self_attn(x, x, x, mask)[0])

    def _ca(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout(self.cross_attn(x, memory, memory, mask)[0])

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(x)))))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode one layer.

        Args:
            x (Tensor[N, L, E]): the target sequence so far.
            memory (Tensor[N, S, E]): the encoder output.
            tgt_mask (Tensor of bool, optional): self-attention mask, usually
                :func:`causal_mask` (L, L), possibly combined with a target padding mask.
            memory_mask (Tensor of bool, optional): cross-attention mask, usually the
                source padding mask of shape (N, 1, S).

        Returns:
            Tensor[N, L, E].
        """
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask)
            x = x + self._ca(self.norm2(x), memory, memory_mask)
            return x + self._ff(self.norm3(x))
        x = self.norm1(x + self._sa(x, tgt_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask))
        return self.norm3(x + self._ff(x))


class Seq2SeqTransformer(nn.Module):
    r"""A small encoder–decoder Transformer for token sequences (Vaswani et al. 2017, Fig. 1).

    Token embeddings are multiplied by :math:`\sqrt{d_{model}}` and added to the
    sinusoidal positional encoding (Sec. 3.4, 3.5), or, with ``positional="learned"``,
    to learned positional embeddings (Gehring et al. 2017; Table 3 row (E) of the
    paper), one vector per position shared by source and target, initialised
    :math:`\mathcal N(0, 1/2)` so that each component has the variance of a sine
    over a full period; the decoder output goes through a
    linear layer to vocabulary logits. With ``pad_idx`` set, padded source positions are
    masked in the encoder's self-attention and in the cross-attention, and padded target
    positions as keys of the decoder's self-attention.

    Args:
        src_vocab_size: number of source tokens.
        tgt_vocab_size: number of target tokens V.
        d_model: embedding size E.
        num_heads: attention heads H.
        num_encoder_layers: encoder depth.
        num_decoder_layers: decoder depth.
        dim_feedforward: hidden size of the feed-forward networks.
        dropout: dropout probability (also applied to embeddings + positions).
        max_len: longest source or target sequence.
        pad_idx: the padding token (shared by source and target), or None.
        norm_first: pre-norm layers (then a final LayerNorm closes each stack).
        positional: ``"sinusoidal"`` (fixed, the paper's choice) or ``"learned"``
            (a trained ``nn.Parameter`` of shape (max_len, E)).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 32,
        num_heads: int = 4,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
        max_len: int = 64,
        pad_idx: int | None = None,
        norm_first: bool = False,
        positional: str = "sinusoidal",
    ) -> None:
        super().__init__()
        caller = "Seq2SeqTransformer"
        _v.choice("positional", positional, caller=caller, choices=("sinusoidal", "learned"))
        for name, value in (
            ("src_vocab_size", src_vocab_size),
            ("tgt_vocab_size", tgt_vocab_size),
            ("num_encoder_layers", num_encoder_layers),
            ("num_decoder_layers", num_decoder_layers),
            ("max_len", max_len),
        ):
            _v.integer(name, value, caller=caller, minimum=1)
        _check_layer_args(caller, d_model, num_heads, dim_feedforward, dropout, norm_first)
        if positional == "sinusoidal" and d_model % 2:
            raise ValueError(f"{caller}: d_model must be even for the sinusoidal encoding; got {d_model}")
        if pad_idx is not None:
            _v.integer("pad_idx", pad_idx, caller=caller)
            if not 0 <= pad_idx < min(src_vocab_size, tgt_vocab_size):
                raise ValueError(
                    f"{caller}: pad_idx must be a token of both vocabularies, in [0, "
                    f"{min(src_vocab_size, tgt_vocab_size)}); got {pad_idx}"
                )
        self.d_model = d_model
        self.pad_idx = pad_idx
        self.max_len = max_len
        self.src_embed = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model)
        self.positional = positional
        if positional == "sinusoidal":
            self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)  # [max_len, E]
        else:  # learned: N(0, 1/2), the variance of sin over a period, so both start at the same scale
            self.pe = nn.Parameter(torch.randn(max_len, d_model) * math.sqrt(0.5))  # [max_len, E]
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, norm_first)
            for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, dim_feedforward, dropout, norm_first)
            for _ in range(num_decoder_layers)
        )
        # Pre-norm stacks end with a LayerNorm (the residual stream is never normalized otherwise).
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.generator = nn.Linear(d_model, tgt_vocab_size)

    def _check_tokens(self, name: str, tokens: object, vocab: int, caller: str) -> None:
        _v.instance(name, tokens, caller=caller, types=torch.Tensor)
        if tokens.dtype != torch.long:
            raise TypeError(f"{caller}: {name} must be a tensor of token ids (torch.long); got dtype {tokens.dtype}")
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(f"{caller}: {name} must have shape (N, length ≥ 1); got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"{caller}: {name} is longer than max_len={self.max_len}; got length {tokens.shape[1]}")
        if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < vocab):
            raise ValueError(
                f"{caller}: {name} ids must be in [0, {vocab}); got min {int(tokens.min())}, max {int(tokens.max())}"
            )

    def _embed(self, embedding: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        x = embedding(tokens) * math.sqrt(self.d_model)  # [N, T, E]
        return self.dropout(x + self.pe[: tokens.shape[1]])

    def src_mask(self, src: torch.Tensor) -> torch.Tensor | None:
        """Source padding mask (N, 1, S), True on real tokens; None without ``pad_idx``."""
        return None if self.pad_idx is None else (src != self.pad_idx).unsqueeze(1)

    def tgt_mask(self, tgt: torch.Tensor) -> torch.Tensor:
        """Decoder self-attention mask (N, L, L): causal, and padded target keys masked."""
        mask = causal_mask(tgt.shape[1], device=tgt.device).unsqueeze(0)  # [1, L, L]
        if self.pad_idx is not None:
            mask = mask & (tgt != self.pad_idx).unsqueeze(1)  # [N, L, L]
        return mask.expand(tgt.shape[0], -1, -1)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """Source tokens Tensor[N, S] → memory Tensor[N, S, E]."""
        self._check_tokens("src", src, self.src_embed.num_embeddings, "Seq2SeqTransformer.encode")
        x, mask = self._embed(self.src_embed, src), self.src_mask(src)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Decoder input tokens Tensor[N, L] (starting with BOS) → logits Tensor[N, L, V]."""
        self._check_tokens("tgt", tgt, self.tgt_embed.num_embeddings, "Seq2SeqTransformer.decode")
        x, tgt_mask, memory_mask = self._embed(self.tgt_embed, tgt), self.tgt_mask(tgt), self.src_mask(src)
        for layer in self.decoder_layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return self.generator(self.decoder_norm(x))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits Tensor[N, L, V] for every position of the decoder input ``tgt`` (N, L)."""
        return self.decode(tgt, self.encode(src), src)

    def decode_step(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        src: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One decoder step with a key/value cache: logits of the last position only.

        ``decode`` re-reads the whole prefix at every step: at step t it projects all t
        tokens to keys and values again in every layer, O(t) work per step and O(L²) for a
        sequence. Causal masking means the keys and values of earlier positions never change,
        so they can be kept: this step embeds only the newest token, appends its key and
        value to each layer's cache and attends from it to the cached ones, O(1) projections
        per step. The logits equal ``decode(tokens, memory, src)[:, -1]``.

        Args:
            tokens (Tensor[N, t] of long): the prefix so far (BOS first); only its last token
                is embedded, the others are needed for the target padding mask.
            memory (Tensor[N, S, E]): encoder output.
            src (Tensor[N, S] of long): source tokens (for the source padding mask).
            cache: ``None`` at the first step, then the list returned by the previous step:
                per decoder layer, the self-attention keys and values Tensor[N, H, t − 1, D].

        Returns:
            ``(logits Tensor[N, V], cache)`` with the cache extended by one position.
        """
        caller = "Seq2SeqTransformer.decode_step"
        self._check_tokens("tokens", tokens, self.tgt_embed.num_embeddings, caller)
        t = tokens.shape[1]
        if cache is None:
            cache = [None] * len(self.decoder_layers)
        elif not isinstance(cache, list) or len(cache) != len(self.decoder_layers):
            raise ValueError(f"{caller}: cache must be None or the list returned by the previous step "
                             f"({len(self.decoder_layers)} layers)")
        elif cache[0][0].shape[2] != t - 1:
            raise ValueError(f"{caller}: the cache holds {cache[0][0].shape[2]} positions, "
                             f"but tokens has {t} (expected {cache[0][0].shape[2] + 1})")
        last = tokens[:, -1:]  # [N, 1]
        x = self.dropout(self.tgt_embed(last) * math.sqrt(self.d_model) + self.pe[t - 1])  # [N, 1, E]
        key_mask = None if self.pad_idx is None else (tokens != self.pad_idx)[:, None, None, :]  # [N, 1, 1, t]
        memory_mask = self.src_mask(src)
        new_cache = []
        for layer, layer_cache in zip(self.decoder_layers, cache):
            attn = layer.self_attn
            n, h, d = x.shape[0], attn.num_heads, attn.head_dim

            def self_attention(y: torch.Tensor) -> torch.Tensor:  # y [N, 1, E]: the newest position only
                q = attn.w_q(y).reshape(n, 1, h, d).transpose(1, 2)  # [N, H, 1, D]
                k = attn.w_k(y).reshape(n, 1, h, d).transpose(1, 2)
                v = attn.w_v(y).reshape(n, 1, h, d).transpose(1, 2)
                if layer_cache is not None:
                    k = torch.cat([layer_cache[0], k], dim=2)  # [N, H, t, D]
                    v = torch.cat([layer_cache[1], v], dim=2)
                new_cache.append((k, v))
                out, _ = scaled_dot_product_attention(q, k, v, key_mask)  # causal for free: keys are ≤ t
                return layer.dropout(attn.w_o(out.transpose(1, 2).reshape(n, 1, h * d)))

            if layer.norm_first:
                x = x + self_attention(layer.norm1(x))
                x = x + layer._ca(layer.norm2(x), memory, memory_mask)
                x = x + layer._ff(layer.norm3(x))
            else:
                x = layer.norm1(x + self_attention(x))
                x = layer.norm2(x + layer._ca(x, memory, memory_mask))
                x = layer.norm3(x + layer._ff(x))
        return self.generator(self.decoder_norm(x))[:, 0], new_cache

    def greedy_decode(
        self, src: torch.Tensor, max_len: int, bos_idx: int, eos_idx: int | None = None, *, use_cache: bool = False
    ) -> torch.Tensor:
        """Greedy decoding: start from BOS and append the arg-max token, ``max_len`` times.

        The encoder runs once. Without ``use_cache`` the decoder re-reads the whole prefix at
        every step; with it, :meth:`decode_step` keeps every layer's keys and values and
        processes only the newest token (the same tokens, less work). After a sequence
        emits ``eos_idx``, its later tokens are ``pad_idx`` (or ``eos_idx`` without one),
        and decoding stops early once every sequence has finished.

        Args:
            src (Tensor[N, S] of long): source tokens.
            max_len: number of tokens to generate (BOS excluded).
            bos_idx: begin-of-sequence token of the target vocabulary.
            eos_idx: end-of-sequence token, or None.
            use_cache: use the key/value cache.

        Returns:
            Tensor[N, max_len] of long: the generated tokens, without BOS.
        """
        caller = "Seq2SeqTransformer.greedy_decode"
        _v.integer("max_len", max_len, caller=caller, minimum=1)
        if max_len + 1 > self.max_len:
            raise ValueError(f"{caller}: max_len + 1 (with BOS) must be ≤ {self.max_len}; got {max_len + 1}")
        vocab = self.tgt_embed.num_embeddings
        for name, idx in (("bos_idx", bos_idx), ("eos_idx", eos_idx)):
            if idx is None and name == "eos_idx":
                continue
            _v.integer(name, idx, caller=caller)
            if not 0 <= idx < vocab:
                raise ValueError(f"{caller}: {name} must be in [0, {vocab}); got {idx}")
        _v.boolean("use_cache", use_cache, caller=caller)
        filler = self.pad_idx if self.pad_idx is not None else eos_idx
        # `with`, not the @torch.no_grad() decorator, so that inspect finds this file for show_source;
        # eval_mode restores the previous mode even if decoding raises.
        with torch.no_grad(), eval_mode(self):
            memory = self.encode(src)  # [N, S, E]
            out = torch.full((src.shape[0], 1), bos_idx, dtype=torch.long, device=src.device)  # [N, 1]
            done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
            cache = None
            for _ in range(max_len):
                if use_cache:
                    logits, cache = self.decode_step(out, memory, src, cache)  # [N, V]
                else:
                    logits = self.decode(out, memory, src)[:, -1]  # the whole prefix again
                next_token = logits.argmax(dim=-1)  # [N]
                if eos_idx is not None:
                    next_token = next_token.masked_fill(done, filler)
                    done = done | (next_token == eos_idx)
                out = torch.cat([out, next_token[:, None]], dim=1)
                if eos_idx is not None and bool(done.all()):
                    break
        tokens = out[:, 1:]
        if tokens.shape[1] < max_len:  # stopped early: every sequence has finished
            pad = torch.full((tokens.shape[0], max_len - tokens.shape[1]), filler, dtype=torch.long, device=src.device)
            tokens = torch.cat([tokens, pad], dim=1)
        return tokens


# ----------------------------------------------------------------------------------------
# Vision Transformer (Dosovitskiy et al. 2021)
# ----------------------------------------------------------------------------------------


def _check_images(images: object, caller: str, name: str = "images") -> torch.Tensor:
    _v.tensor(name, images, caller=caller, dtype="floating", ndim=4)
    return images


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    r"""Cut images into non-overlapping square patches and flatten each one.

    The patch at grid row :math:`r`, column :math:`c` becomes row :math:`r\cdot(W/P) + c`
    of the output (row-major, as the Vision Transformer reads them), flattened in
    (channel, row, column) order, the order of ``F.unfold`` and of a ``Conv2d`` weight
    ``(E, C, P, P)`` reshaped to ``(E, C·P·P)``.

    Args:
        images (Tensor[N, C, H, W]): H and W multiples of ``patch_size``.
        patch_size: P.

    Returns:
        Tensor[N, M, C·P·P] with M = (H / P)·(W / P).
    """
    caller = "patchify"
    _check_images(images, caller)
    p = _v.integer("patch_size", patch_size, caller=caller, minimum=1)
    n, c, h, w = images.shape
    if h % p or w % p:
        raise ValueError(f"{caller}: the image size (H, W) must be multiples of patch_size={p}; got ({h}, {w})")
    x = images.reshape(n, c, h // p, p, w // p, p)  # [N, C, H/P, P, W/P, P]
    x = x.permute(0, 2, 4, 1, 3, 5)  # [N, H/P, W/P, C, P, P]
    return x.reshape(n, (h // p) * (w // p), c * p * p)  # [N, M, C·P·P]; reshape copies the permuted view


class PatchEmbedding(nn.Module):
    r"""Linear patch embedding, Dosovitskiy et al. 2021, Eq. (1): :math:`\mathbf x_p^i \mathbf E`.

    :func:`patchify` followed by one ``nn.Linear(C·P·P, E)``: the same map as a
    ``Conv2d(C, E, kernel_size=P, stride=P)`` (torchvision's ``conv_proj``), written as
    what it is, a matrix applied to every flattened patch.

    Args:
        in_channels: C.
        patch_size: P.
        d_model: E.
    """

    def __init__(self, in_channels: int, patch_size: int, d_model: int) -> None:
        super().__init__()
        caller = "PatchEmbedding"
        self.in_channels = _v.integer("in_channels", in_channels, caller=caller, minimum=1)
        self.patch_size = _v.integer("patch_size", patch_size, caller=caller, minimum=1)
        self.d_model = _v.integer("d_model", d_model, caller=caller, minimum=1)
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)  # E of Eq. (1), with a bias

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor[N, C, H, W] → Tensor[N, M, E]."""
        caller = "PatchEmbedding.forward"
        _check_images(images, caller)
        if images.shape[1] != self.in_channels:
            raise ValueError(
                f"{caller}: images must have in_channels={self.in_channels} channels (dim 1); got shape "
                f"{tuple(images.shape)}"
            )
        return self.proj(patchify(images, self.patch_size))  # [N, M, E]


class VisionTransformer(nn.Module):
    r"""A Vision Transformer for classification, Dosovitskiy et al. 2021, Eqs. (1)-(4).

    .. math::
        \mathbf z_0 &= [\mathbf x_{class};\ \mathbf x_p^1\mathbf E;\ \dots;\ \mathbf x_p^M\mathbf E]
            + \mathbf E_{pos}, \\
        \mathbf z'_\ell &= \operatorname{MSA}(\operatorname{LN}(\mathbf z_{\ell-1})) + \mathbf z_{\ell-1},
        \quad \mathbf z_\ell = \operatorname{MLP}(\operatorname{LN}(\mathbf z'_\ell)) + \mathbf z'_\ell, \\
        \mathbf y &= \operatorname{LN}(\mathbf z_L^0), \qquad \text{logits} = \mathbf y W_{head}.

    The class token :math:`\mathbf x_{class}` (initialised to zeros) and the positions
    :math:`\mathbf E_{pos}` (one learned vector per token, M + 1 of them, initialised
    :math:`\mathcal N(0, 0.02^2)`) are parameters, as in torchvision's
    ``VisionTransformer``; the encoder layers are pre-norm :class:`TransformerEncoderLayer`
    with GELU and LayerNorm ``eps=1e-6``. The head is one linear layer (the paper's
    fine-tuning head; its pre-training head has a hidden layer).

    Args:
        image_size: H = W.
        patch_size: P; must divide ``image_size``.
        in_channels: C.
        num_classes: K.
        d_model: E.
        num_heads: H heads; must divide E.
        num_layers: L encoder layers.
        dim_feedforward: hidden size of each MLP.
        dropout: dropout after the positions and in every layer.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        in_channels: int,
        num_classes: int,
        d_model: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        caller = "VisionTransformer"
        _v.integer("image_size", image_size, caller=caller, minimum=1)
        _v.integer("patch_size", patch_size, caller=caller, minimum=1)
        _v.integer("num_classes", num_classes, caller=caller, minimum=1)
        _v.integer("num_layers", num_layers, caller=caller, minimum=1)
        if image_size % patch_size:
            raise ValueError(f"{caller}: patch_size must divide image_size; got {patch_size} and {image_size}")
        _check_layer_args(caller, d_model, num_heads, dim_feedforward, dropout, True)
        self.image_size = image_size
        self.num_patches = (image_size // patch_size) ** 2  # M
        self.patch_embed = PatchEmbedding(in_channels, patch_size, d_model)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d_model))  # x_class
        self.pos_embedding = nn.Parameter(torch.empty(1, self.num_patches + 1, d_model).normal_(std=0.02))  # E_pos
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, num_heads, dim_feedforward, dropout, norm_first=True, activation="gelu", layer_norm_eps=1e-6
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, num_classes)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add the positions, run the encoder layers and the final LayerNorm: Tensor[N, M + 1, E] → Tensor[N, M + 1, E].

        This is torchvision's ``vision_transformer.Encoder``.
        """
        caller = "VisionTransformer.encode"
        _v.tensor("tokens", tokens, caller=caller, dtype="floating", shape=("N", *self.pos_embedding.shape[1:]))
        x = self.dropout(tokens + self.pos_embedding)  # [N, M + 1, E]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor[N, C, H, W] → logits Tensor[N, K]."""
        caller = "VisionTransformer.forward"
        _check_images(images, caller)
        if tuple(images.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"{caller}: images must be {self.image_size}×{self.image_size}; got shape {tuple(images.shape)}"
            )
        patches = self.patch_embed(images)  # [N, M, E]
        cls = self.class_token.expand(images.shape[0], -1, -1)  # [N, 1, E]
        z = self.encode(torch.cat([cls, patches], dim=1))  # [N, M + 1, E]
        return self.head(z[:, 0])  # the class token's output → [N, K]
