import pytest
import torch
import torch.nn.functional as F

from mmer.errors import ConfigError
from mmer.nn.adversarial import (
    CommonGenerator,
    CommonSemanticHead,
    GradientReversal,
    ModalityDiscriminator,
    SpecificityNets,
    grad_reverse,
    orthogonality,
    orthogonality_loss,
)


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -1.0))
    x.grad = None
    GradientReversal()(x).sum().backward()
    torch.testing.assert_close(x.grad, -torch.ones_like(x))


def test_common_loss_trains_discriminator_and_reverses_generator_gradient():
    torch.manual_seed(0)
    disc = ModalityDiscriminator(8, 3).eval()
    xs = [torch.randn(2, 5, 8, requires_grad=True) for _ in range(3)]
    plain = disc.modality_loss(xs)
    plain.backward()
    d_plain = [p.grad.clone() for p in disc.parameters()]
    x_plain = [x.grad.clone() for x in xs]
    disc.zero_grad()
    for x in xs:
        x.grad = None
    reversed_loss = disc.modality_loss(xs, reverse=1.0)
    reversed_loss.backward()
    torch.testing.assert_close(reversed_loss, plain)
    for p, g in zip(disc.parameters(), d_plain):
        torch.testing.assert_close(p.grad, g)  # D still minimises the CE
    for x, g in zip(xs, x_plain):
        torch.testing.assert_close(x.grad, -g)  # the generator side maximises it


def test_modality_loss_is_mean_token_cross_entropy_and_respects_masks():
    torch.manual_seed(0)
    disc = ModalityDiscriminator(4, 2).eval()
    xs = [torch.randn(3, 5, 4), torch.randn(3, 2, 4)]  # modalities may differ in length
    expected = sum(
        F.cross_entropy(disc(x).flatten(0, 1), torch.full((x.shape[0] * x.shape[1],), m)) for m, x in enumerate(xs)
    )
    torch.testing.assert_close(disc.modality_loss(xs), expected)
    masks = [torch.ones(3, 5, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool)]  # modality 1 missing
    masks[0][0, 3:] = False
    loss = disc.modality_loss(xs, masks)
    real = disc(xs[0])[masks[0]]
    torch.testing.assert_close(loss, F.cross_entropy(real, torch.zeros(real.shape[0], dtype=torch.long)))
    xs2 = [xs[0].clone(), 1e3 * torch.randn(3, 2, 4)]
    xs2[0][0, 3:] = 1e3
    torch.testing.assert_close(disc.modality_loss(xs2, masks), loss)


def test_discriminator_kinds():
    x = torch.randn(2, 4, 8)
    mlp = ModalityDiscriminator(8, 3)
    assert [type(m).__name__ for m in mlp.net] == ["Linear", "Dropout", "ReLU", "Linear"]
    assert mlp.net[0].out_features == 4 and mlp(x).shape == (2, 4, 3)
    lin = ModalityDiscriminator(8, 3, kind="linear", num_positions=6)
    with torch.no_grad():
        lin.position_bias.copy_(torch.arange(18.0).view(6, 3))
    torch.testing.assert_close(lin(x), lin.net(x) + torch.arange(12.0).view(4, 3))
    with pytest.raises(ConfigError, match="num_positions=6"):
        lin(torch.randn(1, 7, 8))
    with pytest.raises(ConfigError, match="discriminator kind"):
        ModalityDiscriminator(8, 3, kind="softmax")


def test_specificity_and_common_nets():
    torch.manual_seed(0)
    f = SpecificityNets(3, 6).eval()
    g = CommonGenerator(6).eval()
    xs = [torch.randn(2, 4, 6) for _ in range(3)]
    specific, common = f(xs), g(xs)
    torch.testing.assert_close(specific[1], torch.tanh(f.nets[1][0](xs[1])))
    torch.testing.assert_close(common[2], torch.tanh(g.net[0](xs[2])))  # one shared G
    assert f.nets[0][1].p == 0.1 and g.net[1].p == 0.3


def test_orthogonality_formula_pairs_and_masks():
    torch.manual_seed(0)
    x, y = torch.randn(3, 4, 5), torch.randn(3, 2, 5)
    manual = sum(torch.linalg.matrix_norm(x[b] @ y[b].T) ** 2 for b in range(3)) / 3
    torch.testing.assert_close(orthogonality(x, y), manual)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[:, 2:] = False
    torch.testing.assert_close(orthogonality(x, y, mask), orthogonality(x[:, :2], y))
    common = [torch.randn(2, 3, 5) for _ in range(3)]
    specific = [torch.randn(2, 3, 5) for _ in range(3)]
    paper = orthogonality_loss(common, specific)
    code = orthogonality_loss(common, specific, pairs="code")
    torch.testing.assert_close(paper, sum(orthogonality(c, s) for c, s in zip(common, specific)))
    extra = sum(orthogonality(specific[m], specific[n]) for m, n in ((0, 1), (0, 2), (1, 2)))
    torch.testing.assert_close(code, paper + extra)
    assert paper > 0  # positive sign: minimising it reduces the overlap
    with pytest.raises(ConfigError, match="orthogonality pairs"):
        orthogonality_loss(common, specific, pairs="all")


def test_common_semantic_paper_mode():
    torch.manual_seed(0)
    head = CommonSemanticHead(4, 3, mode="paper").eval()
    common = [torch.randn(2, 5, 4) for _ in range(3)]
    masks = [torch.ones(2, 5, dtype=torch.bool) for _ in range(3)]
    masks[0][0, 2:] = False
    masks[2][1] = False  # sample 1 lacks modality 2
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = head(common, masks)
    assert logits.shape == (2, 3, 3)
    torch.testing.assert_close(logits[0, 0], head.classifier(common[0][0, :2].mean(0)))
    loss = head.loss(common, y, masks)
    bce = lambda lg, t: F.binary_cross_entropy_with_logits(lg, t)  # noqa: E731
    expected = bce(logits[:, 0], y) + bce(logits[:, 1], y) + bce(logits[:1, 2], y[:1])
    torch.testing.assert_close(loss, expected)
    assert head.dropout.p == 0.0


def test_common_semantic_code_mode_uses_token_zero_of_the_sum():
    torch.manual_seed(0)
    head = CommonSemanticHead(4, 3, mode="code")
    assert head.dropout.p == 0.1
    head.eval()
    common = [torch.randn(2, 5, 4, requires_grad=True) for _ in range(3)]
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = head(common)
    torch.testing.assert_close(logits[:, 0], head.classifier(common[0][:, 0] + common[1][:, 0] + common[2][:, 0]))
    loss = head.loss(common, y)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits[:, 0], y))
    loss.backward()
    assert common[1].grad[:, 0].abs().sum() > 0 and torch.all(common[1].grad[:, 1:] == 0)
    with pytest.raises(ValueError, match="same shape"):
        head([torch.randn(2, 5, 4), torch.randn(2, 4, 4)])
