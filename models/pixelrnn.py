"""PixelRNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks"): an exact,
autoregressive likelihood over pixels in raster order, log p(x) = sum_i log p(x_i | x_<i),
computed by two-dimensional LSTM layers.

The network (sec. 3 and Table 1 of the paper): a k x k convolution with mask A (the current
pixel excluded) maps the image to 2h feature maps; then ``layers`` residual LSTM layers, each
with a masked input-to-state convolution (mask B: the current position included, which
after mask A still sees only earlier pixels), h LSTM state maps, and a 1x1 convolution back
to 2h added to its input; then the output head PixelCNN uses (ReLU, 1x1, ReLU, 1x1): a
Bernoulli per pixel on binarized data, a 256-way softmax read as a density on continuous
data (``genbench_models._pixels``).

- ``layer="diagonal"`` (the default), Diagonal BiLSTM: the input-to-state is 1x1; the state
  at (i, j) comes from (i - 1, j) and (i, j - 1) by a 2x1 convolution along each diagonal.
  The skew trick makes the diagonals columns: row i is shifted right by i (as public
  implementations do, e.g. taimir/pixel-rnn-lasagne), so one step computes a whole
  diagonal from the previous one; unskewing undoes it. The second direction runs on the
  mirrored map (the state at (i, j) from (i - 1, j) and (i, j + 1)); it sees pixels to the
  right in row i, so its output is shifted down one row before it is added: causal. The two
  together see every earlier pixel but one: the last pixel of the row above, which only
  first-layer features of the current row see (k//2 columns to its left), is hidden from
  the first W - 1 - k//2 pixels of a row, at any depth (tests/test_pixelrnn.py).
- ``layer="row"``, Row LSTM: row i's state comes from row i - 1's by a 1 x k convolution,
  plus a 1 x k input-to-state convolution masked B; its receptive field is a triangle above
  the pixel (the paper's stated blind spot).

Skewed positions outside the image are held at zero state, so a row's first pixel starts
from zero on its left, as the sampler does.

Channels (RGB) are conditionally independent given the previous pixels, as genbench's
PixelCNN (the paper's R -> G -> B channel masks are not implemented).

Sampling is pixel by pixel from noise drawn up front (inverse CDF), so the cached sampler
and the straightforward one (``cached=False``: a full network pass per pixel) give the same
images for the same noise. The cache: the LSTM states of the row above (Row LSTM: the
previous row's h, c and its state-to-state term; Diagonal BiLSTM: the left-to-right h of the
row above, and the right-to-left h of the row above, which is complete once that row is,
computed by one right-to-left sweep per row). Each pixel then costs one LSTM cell per
layer: about H * W times fewer FLOPs than a full pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.errors import GenbenchError
from genbench.kit.nn import adam
from genbench.settings import one_of, positive

# isort: split
# (genbench_models sorts as first- or third-party depending on the checkout)
from genbench_models._pixels import PixelLikelihood, levels_for, output_head, shift_down

LAYERS = ("diagonal", "row")


@dataclass(frozen=True)
class PixelRNNConfig:
    layer: str = one_of("diagonal", LAYERS)  # Diagonal BiLSTM, or Row LSTM
    hidden: int = positive(16)  # h: LSTM state maps; the maps between layers carry 2h
    layers: int = positive(2)  # LSTM layers after the first (mask A) convolution
    first_kernel: int = positive(7)  # k of the first convolution (the paper: 7x7)
    row_kernel: int = positive(3)  # Row LSTM: width of both its convolutions (the paper: k = 3)
    head: int = positive(32)  # hidden 1x1 layer of the output head
    lr: float = positive(1e-3)


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees the rows above its centre and, in the centre row, the columns
    to the left (mask A) or to the left and the centre (mask B). Callers pad (``window``
    takes an input already padded; ``forward`` pads by half the kernel each side)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], mask: str) -> None:
        super().__init__(c_in, c_out, kernel)
        kh, kw = kernel
        m = torch.ones(1, 1, kh, kw)
        m[..., kh // 2, kw // 2 + (mask == "B"):] = 0
        m[..., kh // 2 + 1:, :] = 0
        self.register_buffer("mask", m)

    def window(self, padded: torch.Tensor) -> torch.Tensor:
        return F.conv2d(padded, self.weight * self.mask, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return self.window(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2)))


def lstm_cell(gates: torch.Tensor, c: torch.Tensor, groups: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update (the paper's eq. 3): gates (N, G*4h, ...) as [o, f, i, g] per group,
    cell c (N, G*h, ...) -> (new c, new h), each (N, G*h, ...)."""
    n, gh = c.shape[:2]
    rest = c.shape[2:]
    g = gates.view(n, groups, 4, gh // groups, *rest)
    ofi = torch.sigmoid(g[:, :, :3])
    c = ofi[:, :, 1] * c.view(n, groups, gh // groups, *rest) + ofi[:, :, 2] * torch.tanh(g[:, :, 3])
    h = ofi[:, :, 0] * torch.tanh(c)
    return c.reshape(n, gh, *rest), h.reshape(n, gh, *rest)


def skew(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W + H - 1), row i shifted right by i (zeros elsewhere): the
    diagonals of t become columns. Each row is padded by H, the rows laid end to end and cut
    into rows one shorter."""
    n, c, rows, cols = t.shape
    flat = F.pad(t, (0, rows)).reshape(n, c, rows * (cols + rows))
    return flat[..., :rows * (cols + rows - 1)].reshape(n, c, rows, cols + rows - 1)


def unskew(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`skew`: (N, C, H, W + H - 1) -> (N, C, H, W)."""
    n, c, rows, wide = t.shape
    flat = F.pad(t.reshape(n, c, rows * wide), (0, rows)).reshape(n, c, rows, wide + 1)
    return flat[..., :wide - rows + 1]


def diagonal_scan(pre: torch.Tensor, s2s: nn.Conv1d, groups: int) -> torch.Tensor:
    """Diagonal LSTM states (N, G*h, H, W) from input-to-state maps pre (N, G*4h, H, W): the
    state at (i, j) from h at (i - 1, j) and (i, j - 1) (a 2x1 convolution along the skewed
    column) and c at (i, j - 1); zero state outside the image.

    Step d computes diagonal d, the skewed column's rows lo..hi inside the image (half the
    skewed map is outside it). Row i - 1 of diagonal d - 1 is (i - 1, j) and its row i is
    (i, j - 1), so the convolution runs on the previous diagonal padded by a zero row each
    side (row 0 has nothing above, a row's first pixel nothing to its left)."""
    n, _, rows, cols = pre.shape
    skewed = skew(pre)  # (N, G*4h, H, W + H - 1)
    h = c = pre.new_zeros(n, s2s.in_channels, 0)  # diagonal d - 1, its rows lo_prev..hi_prev
    lo_prev, out = 0, []
    # unbind once: indexing a column per step would make autograd add a zero tensor the
    # size of the whole map per step on the way back
    for d, pre_d in enumerate(skewed.movedim(-1, 0).unbind(0)):
        lo, hi = max(0, d - cols + 1), min(d, rows - 1)
        a, m = lo - lo_prev, hi - lo + 1  # offset into the padded previous diagonal, length
        above_left = F.pad(h, (1, 1))[..., a:a + m + 1]  # rows lo - 1 .. hi
        c, h = lstm_cell(pre_d[..., lo:hi + 1] + s2s(above_left),
                         F.pad(c, (1, 1))[..., a + 1:a + m + 1], groups)
        out.append(F.pad(h, (lo, rows - 1 - hi)))
        lo_prev = lo
    return unskew(torch.stack(out, -1))


class DiagonalBiLSTM(nn.Module):
    """One residual Diagonal BiLSTM layer (both directions in one grouped scan)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.i2s = nn.Conv2d(2 * hidden, 8 * hidden, 1)  # mask B on a 1x1: the position itself
        self.s2s = nn.Conv1d(2 * hidden, 8 * hidden, 2, groups=2, bias=False)  # [left, right]
        self.out = nn.Conv2d(hidden, 2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.i2s(x).chunk(2, dim=1)
        states = diagonal_scan(torch.cat([left, right.flip(-1)], 1), self.s2s, 2)
        lh, rh = states.chunk(2, dim=1)
        return x + self.out(lh + shift_down(rh.flip(-1)))  # right-to-left: one row down

    # -- the sampler's cache ------------------------------------------------------------
    def start(self, x: torch.Tensor, cols: int) -> dict[str, torch.Tensor]:
        z = x.new_zeros(x.shape[0], self.hidden, cols)
        return {"up_l": z, "up_r": z, "h_l": z.clone(), "c_l": z.clone(),
                "pre_r": x.new_zeros(x.shape[0], 4 * self.hidden, cols)}

    def step(self, x: torch.Tensor, st: dict[str, torch.Tensor], j: int) -> torch.Tensor:
        """Layer output (n, 2h) at (i, j) of the row in progress, from its input x (n, 2h)."""
        pre_l, st["pre_r"][:, :, j] = self.i2s(x[..., None, None])[..., 0, 0].chunk(2, dim=1)
        left_h = st["h_l"][:, :, j - 1] if j else torch.zeros_like(x[:, :self.hidden])
        left_c = st["c_l"][:, :, j - 1] if j else torch.zeros_like(left_h)
        column = torch.stack([st["up_l"][:, :, j], left_h], -1)  # (n, h, 2): above, left
        gates = pre_l + F.conv1d(column, self.s2s.weight[:4 * self.hidden])[..., 0]
        st["c_l"][:, :, j], st["h_l"][:, :, j] = lstm_cell(gates, left_c)
        return x + self.out((st["h_l"][:, :, j] + st["up_r"][:, :, j])[..., None, None])[..., 0, 0]

    def end_row(self, st: dict[str, torch.Tensor]) -> None:
        """The row is complete: sweep its right-to-left states; it becomes the row above."""
        n, _, cols = st["h_l"].shape
        h_r, c_r = torch.zeros_like(st["h_l"]), torch.zeros_like(st["h_l"])
        zero = st["h_l"].new_zeros(n, self.hidden)
        for j in reversed(range(cols)):
            right_h = h_r[:, :, j + 1] if j + 1 < cols else zero
            right_c = c_r[:, :, j + 1] if j + 1 < cols else zero
            column = torch.stack([st["up_r"][:, :, j], right_h], -1)
            gates = st["pre_r"][:, :, j] + F.conv1d(column, self.s2s.weight[4 * self.hidden:])[..., 0]
            c_r[:, :, j], h_r[:, :, j] = lstm_cell(gates, right_c)
        st["up_l"], st["up_r"] = st["h_l"], h_r
        st["h_l"], st["c_l"] = torch.zeros_like(h_r), torch.zeros_like(h_r)


class RowLSTM(nn.Module):
    """One residual Row LSTM layer: row by row, a 1 x k state-to-state convolution."""

    def __init__(self, hidden: int, k: int) -> None:
        super().__init__()
        self.hidden, self.k = hidden, k
        self.i2s = MaskedConv2d(2 * hidden, 4 * hidden, (1, k), "B")
        self.s2s = nn.Conv1d(hidden, 4 * hidden, k, padding=k // 2, bias=False)
        self.out = nn.Conv2d(hidden, 2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.i2s(x)  # (N, 4h, H, W)
        h = c = pre.new_zeros(pre.shape[0], self.hidden, pre.shape[3])
        out = []
        for pre_row in pre.unbind(2):  # unbind once (see diagonal_scan)
            c, h = lstm_cell(pre_row + self.s2s(h), c)
            out.append(h)
        return x + self.out(torch.stack(out, 2))

    # -- the sampler's cache ------------------------------------------------------------
    def start(self, x: torch.Tensor, cols: int) -> dict[str, torch.Tensor]:
        n, k2 = x.shape[0], self.k // 2
        z = x.new_zeros(n, self.hidden, cols)
        return {"c_up": z, "ss_up": self.s2s(z), "h": z.clone(), "c": z.clone(),
                "row": x.new_zeros(n, 2 * self.hidden, 1, cols + 2 * k2)}  # padded like forward

    def step(self, x: torch.Tensor, st: dict[str, torch.Tensor], j: int) -> torch.Tensor:
        k2 = self.k // 2
        st["row"][:, :, 0, j + k2] = x
        pre = self.i2s.window(st["row"][..., j:j + self.k])[..., 0, 0]  # (n, 4h)
        st["c"][:, :, j], st["h"][:, :, j] = lstm_cell(pre + st["ss_up"][:, :, j], st["c_up"][:, :, j])
        return x + self.out(st["h"][:, :, j, None, None])[..., 0, 0]

    def end_row(self, st: dict[str, torch.Tensor]) -> None:
        st["c_up"], st["ss_up"] = st["c"], self.s2s(st["h"])
        st["h"], st["c"] = torch.zeros_like(st["h"]), torch.zeros_like(st["c"])
        st["row"].zero_()


@register_model("pixelrnn")
class PixelRNN(PixelLikelihood, nn.Module):
    """PixelRNN (van den Oord et al. 2016): Diagonal BiLSTM or Row LSTM, exact log-likelihood."""

    Config = PixelRNNConfig
    presets = {
        "smoke": {"hidden": 4, "layers": 1, "head": 8},
        "quick": {"hidden": 16, "layers": 1, "head": 32, "lr": 3e-3, "epochs": 6},
        "paper": {"hidden": 16, "layers": 7, "head": 32},  # MNIST: 7 layers, h = 16
    }

    def __init__(self, config: PixelRNNConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.levels = levels_for(info)  # 1: a Bernoulli logit
        if config.first_kernel % 2 == 0 or config.row_kernel % 2 == 0:
            raise GenbenchError("pixelrnn: odd first_kernel and row_kernel")
        c, h, k = info.shape[0], config.hidden, config.first_kernel
        self.first = MaskedConv2d(c, 2 * h, (k, k), "A")
        self.layers = nn.ModuleList(
            [DiagonalBiLSTM(h) if config.layer == "diagonal" else RowLSTM(h, config.row_kernel)
             for _ in range(config.layers)])
        self.head = output_head(2 * h, config.head, c * self.levels)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """One full pass: logits (N, C, levels, H, W) of every p(x_i | x_<i)."""
        t = self.first(inputs)
        for layer in self.layers:
            t = layer(t)
        n, _, rows, cols = t.shape
        return self.head(t).view(n, self.info.shape[0], self.levels, rows, cols)

    # -- capabilities -------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood per image, (N,), in nats: log P(x) on binarized data, the
        log-density log P(v) + D log 256 of the dequantized image on continuous data."""
        values = self.to_values(x)
        return self.pixel_log_prob(self.logits(self.to_inputs(values).to(self.dtype)), values)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]: {0, 1} pixels, or 8-bit values at their bin centres."""
        u = torch.rand(n, *self.info.shape, generator=generator, device=self.device,
                       dtype=self.dtype)
        return self.sample_from_noise(u)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, rows: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Keep the first ``rows`` rows of x and sample the rest (the completions gallery)."""
        u = torch.rand(x.shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.sample_from_noise(u, given=x, from_row=rows)

    @torch.no_grad()
    def sample_from_noise(self, u: torch.Tensor, *, cached: bool = True,
                          given: torch.Tensor | None = None, from_row: int = 0) -> torch.Tensor:
        """Images drawn pixel by pixel with uniforms u (n, C, H, W), by inverse CDF.

        ``cached=False`` is the straightforward sampler (a full network pass per pixel), kept
        for the benchmark and the test that both draw the same images. ``given`` and
        ``from_row``: rows before ``from_row`` are taken from ``given`` (completions).
        """
        n, _, rows, cols = u.shape
        values = torch.zeros(u.shape, device=u.device,
                             dtype=torch.long if self.categorical else u.dtype)
        if given is not None and from_row:
            values[:, :, :from_row] = self.to_values(given[:, :, :from_row])
        inputs = self.to_inputs(values).to(u.dtype)
        if not cached:
            for i in range(from_row, rows):
                for j in range(cols):
                    logits = self.logits(inputs)[..., i, j]  # (n, C, levels)
                    values[:, :, i, j] = self._draw(logits, u[:, :, i, j])
                    inputs[:, :, i, j] = self.to_inputs(values[:, :, i, j]).to(u.dtype)
            return self.to_images(values, u.dtype)
        k2 = self.config.first_kernel // 2
        padded = F.pad(inputs, (k2, k2, k2, k2))  # the first convolution's input, as forward
        x0 = padded.new_zeros(n, 2 * self.config.hidden)
        states = [layer.start(x0, cols) for layer in self.layers]
        for i in range(rows):
            for j in range(cols):
                t = self.first.window(padded[:, :, i:i + 2 * k2 + 1, j:j + 2 * k2 + 1])[..., 0, 0]
                for layer, st in zip(self.layers, states, strict=True):
                    t = layer.step(t, st, j)
                if i >= from_row:
                    logits = self.head(t[..., None, None])[..., 0, 0].view(n, -1, self.levels)
                    values[:, :, i, j] = self._draw(logits, u[:, :, i, j])
                    padded[:, :, i + k2, j + k2] = self.to_inputs(values[:, :, i, j]).to(u.dtype)
            for layer, st in zip(self.layers, states, strict=True):
                layer.end_row(st)
        return self.to_images(values, u.dtype)

    @property
    def device(self) -> torch.device:
        return self.first.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.first.weight.dtype

    # -- training -----------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The mean negative log-likelihood per image in nats (the runner steps Adam)."""
        return {"loss": -self.log_prob(batch.x).mean()}
