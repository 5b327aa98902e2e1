"""Early backward of the auxiliary branches: the same losses and gradients
as one autograd graph, and clear errors where it cannot be used."""
import copy

import pytest
import torch
import torch.nn as nn
from dmue_testing import loss_total, one_thread, samples, tiny_dmue  # noqa

from dmue_mm.models.utils import LossPiece, early_backward

K = 4
LABELS = [0, 1, 2, 3, 2, 0, 1, 3, 3, 0, 2, 1]


def grads(model):
    return {n: p.grad for n, p in model.named_parameters()}


def assert_grads_close(actual, expected, rel=1e-4):
    """Per-tensor closeness on the scale of the largest gradient (a BN
    weight's gradient can be a sum that cancels to ~1e-6)."""
    scale = max(g.abs().max().item() for g in expected.values())
    for name, ref in expected.items():
        assert actual[name] is not None, name
        torch.testing.assert_close(
            actual[name], ref, rtol=rel, atol=rel * 1e-1 * scale,
            msg=lambda m: f'{name}: {m}')


def run(model, x, labels, seed=5, scale=1.0, autocast=False):
    """Losses and gradients of one training step (dropout seeded)."""
    torch.manual_seed(seed)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        losses = model.loss(x, samples(labels))
    (scale * loss_total(losses)).backward()
    return losses, grads(model)


@pytest.fixture(scope='module')
def pair():
    """The same trained-mode model with and without early backward."""
    torch.manual_seed(0)
    early = tiny_dmue(K).train()
    graph = copy.deepcopy(early)
    graph.head.early_backward = False
    return early, graph


class TestSameGradients:

    @pytest.mark.parametrize('labels', [LABELS, [0, 0, 1, 2, 2, 2, 1, 0]])
    def test_losses_gradients_and_running_stats(self, pair, labels):
        early, graph = (copy.deepcopy(m) for m in pair)
        x = torch.randn(len(labels), 3, 32, 32)
        out_e, grad_e = run(early, x, labels)
        out_g, grad_g = run(graph, x, labels)
        for name, value in out_g.items():
            assert out_e[name].item() == pytest.approx(
                value.item(), rel=1e-5, abs=1e-7), name
        assert_grads_close(grad_e, grad_g)
        for (name, a), (_, b) in zip(early.named_buffers(),
                                     graph.named_buffers()):
            torch.testing.assert_close(a, b, msg=lambda m: f'{name}: {m}')

    def test_scaled_loss_scales_gradients(self, pair):
        """Loss scaling and gradient accumulation multiply the loss."""
        early, graph = (copy.deepcopy(m) for m in pair)
        x = torch.randn(len(LABELS), 3, 32, 32)
        _, grad_e = run(early, x, LABELS, scale=0.25)
        _, grad_g = run(graph, x, LABELS, scale=0.25)
        assert_grads_close(grad_e, grad_g)

    def test_bf16_autocast(self, pair):
        early, graph = (copy.deepcopy(m) for m in pair)
        x = torch.randn(len(LABELS), 3, 32, 32)
        _, grad_e = run(early, x, LABELS, autocast=True)
        _, grad_g = run(graph, x, LABELS, autocast=True)
        assert_grads_close(grad_e, grad_g, rel=1e-2)


class TestMisuse:

    def test_single_term_backward_raises(self, pair):
        model = copy.deepcopy(pair[0])
        losses = model.loss(torch.randn(8, 3, 32, 32), samples(LABELS[:8]))
        with pytest.raises(RuntimeError, match='early_backward=False'):
            losses['loss_sp'].backward()

    def test_second_backward_raises(self, pair):
        model = copy.deepcopy(pair[0])
        losses = model.loss(torch.randn(8, 3, 32, 32), samples(LABELS[:8]))
        loss_total(losses).backward(retain_graph=True)
        with pytest.raises(RuntimeError, match='only once'):
            loss_total(losses).backward()


class TestEarlyBackwardFunction:
    """The generic helper on a hand-written loss."""

    def setup_method(self):
        torch.manual_seed(0)
        self.shared = nn.Linear(3, 2)
        self.own = nn.ModuleList(nn.Linear(2, 1) for _ in range(3))
        self.unused = nn.Parameter(torch.ones(2))
        self.pieces = [
            LossPiece(
                fn=lambda x, c=c: torch.stack(
                    [self.own[c](self.shared(x)).pow(2).sum(),
                     x.sum() * c]),
                spans=[(c, 4)],
                params=[*self.own[c].parameters(), *self.shared.parameters()]
                + ([self.unused] if c == 2 else []))
            for c in range(3)
        ]
        self.weights = torch.tensor([1.0, 0.5, 2.0, 0.0, 0.3, 4.0])

    def loss(self, x, eager: bool):
        if eager:
            values = early_backward(self.pieces, self.weights, [x])
        else:
            values = torch.cat(
                [p.fn(*p.inputs([x])) for p in self.pieces])
        return values, (values * self.weights).sum()

    def test_values_and_gradients(self):
        params = [*self.shared.parameters(), *self.own.parameters()]
        base = torch.randn(6, 3, requires_grad=True)
        expected = []
        for eager in (False, True):
            x = base * 1.0  # a non-leaf input, as the trunk output
            values, loss = self.loss(x, eager)
            got = torch.autograd.grad(3.0 * loss, [base] + params)
            expected.append((values.detach(), got))
        (v0, g0), (v1, g1) = expected
        torch.testing.assert_close(v1, v0)
        for a, b in zip(g1, g0):
            torch.testing.assert_close(a, b)

    def test_every_parameter_gets_a_gradient(self):
        _, loss = self.loss(torch.randn(6, 3), eager=True)
        loss.backward()
        assert torch.equal(self.unused.grad, torch.zeros(2))

    def test_no_grad_mode_computes_values_only(self):
        x = torch.randn(6, 3)
        with torch.no_grad():
            values, _ = self.loss(x, eager=True)
        assert not values.requires_grad
        torch.testing.assert_close(values, self.loss(x, eager=False)[0])
