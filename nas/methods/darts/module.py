"""DARTS (Liu et al., ICLR 2019): every path weighted by softmax(α), α learned by gradient descent.

Every step: one Adam step on α with a validation minibatch, then one SGD step on the weights with a
training minibatch (`model.step_order=weights_first`: the other way round), both on the supernet
with path weights softmax(α) (all paths computed). `order=1` differentiates L_val(w, α) at the
current weights (weights_first: those the step's weight step produced). `order=2` differentiates
the unrolled objective L_val(w', α) with w' = w - ξ (m + ∇_w L_train(w, α) + λ w) (ξ the current
weight lr, m the momentum term, λ the decay), approximating its second-order term by finite
differences:

    ∇_α L_val(w', α) - ξ · (∇_α L_train(w⁺, α) - ∇_α L_train(w⁻, α)) / (2ε),
    w± = w ± ε ∇_w' L_val(w', α),   ε = `unrolled_eps` (0.01) / ‖∇_w' L_val(w', α)‖.

The virtual step is plain momentum SGD also when the weights train with Nesterov (`model.nesterov`),
as AutoDL-Projects' DARTS-V2 takes it for its NAS-Bench-201 search, which trains with Nesterov.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nas.errors import check
from nas.methods.darts.alpha import AlphaModule
from nas.spaces import SearchSpace, Weights


class DARTSModule(AlphaModule):
    """DARTS, first (`order=1`) or second order (`order=2`)."""

    method = "darts"
    derives = "darts"  # the argmax architecture of α, at the end of training

    def __init__(
        self, space: SearchSpace | Mapping, order: int = 1, unrolled_eps: float = 0.01, **kwargs
    ):
        check(
            order in (1, 2), f"model.order={order!r} must be 1 or 2 (first- or second-order DARTS)"
        )
        check(unrolled_eps > 0, f"model.unrolled_eps={unrolled_eps!r} must be > 0 (DARTS: 0.01)")
        check(
            order == 1 or kwargs.get("step_order", "alpha_first") == "alpha_first",
            f"model.order=2 with model.step_order={kwargs.get('step_order')!r}: second-order DARTS "
            "unrolls the weight step that follows its α step; use model.step_order=alpha_first "
            "(DARTS's code, AutoDL's DARTS-V2) or model.order=1",
        )
        super().__init__(space, **kwargs)

    def eval_path_weights(self) -> Weights:
        return self._softmax_weights()

    def train_path_weights(self, ghosts: int) -> Weights:
        return self._softmax_weights()

    def _softmax_weights(self) -> Weights:
        probs = self.probabilities()
        return {d.name: probs[d.name][: len(d.options)].unsqueeze(0) for d in self.space.decisions}

    def arch_gradients(self, x, y, xv, yv) -> list[torch.Tensor]:
        if self.hparams.order == 1:
            return super().arch_gradients(x, y, xv, yv)
        return self.unrolled_gradients(x, y, xv, yv, self._virtual_step_settings())

    def _virtual_step_settings(self) -> tuple[float, float, dict]:
        """(ξ, λ, momentum buffers by parameter) of the weights' optimiser now."""
        optimizer = self.optimizers().optimizer if self._trainer is not None else None
        if optimizer is None:
            return self.hparams.lr, self.hparams.l2, {}
        group = optimizer.param_groups[0]
        buffers = {
            id(p): optimizer.state[p]["momentum_buffer"] * group["momentum"]
            for p in group["params"]
            if optimizer.state.get(p, {}).get("momentum_buffer") is not None
        }
        return group["lr"], self.hparams.l2, buffers

    def unrolled_gradients(self, x, y, xv, yv, settings) -> list[torch.Tensor]:
        """The second-order architecture gradient (module docstring), with finite differences."""
        xi, decay, momentum = settings
        names = [n for n, _ in self.supernet.named_parameters()]
        params = [p for _, p in self.supernet.named_parameters()]
        alphas = list(self.alpha)
        ghost = self.hparams.ghost_size

        def loss_at(values, xb, yb, weights):
            logits = functional_call(
                self.supernet, dict(zip(names, values, strict=True)), (xb, weights, ghost)
            )
            return F.cross_entropy(logits, yb)

        fixed = {k: v.detach() for k, v in self._softmax_weights().items()}
        grads = torch.autograd.grad(loss_at(params, x, y, fixed), params)
        virtual = [
            (p - xi * (momentum.get(id(p), 0) + g + (decay * p if p.dim() > 1 else 0))).detach()
            for p, g in zip(params, grads, strict=True)
        ]
        virtual = [v.requires_grad_(True) for v in virtual]
        val = loss_at(virtual, xv, yv, self._softmax_weights())
        (*d_alpha,) = torch.autograd.grad(val, alphas, retain_graph=True)
        d_virtual = torch.autograd.grad(val, virtual)
        norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in d_virtual))
        eps = self.hparams.unrolled_eps / norm.clamp_min(1e-12)
        outer = []
        for sign in (1, -1):
            shifted = [
                (p + sign * eps * g).detach() for p, g in zip(params, d_virtual, strict=True)
            ]
            outer.append(
                torch.autograd.grad(loss_at(shifted, x, y, self._softmax_weights()), alphas)
            )
        return [
            da - xi * (gp - gm) / (2 * eps)
            for da, gp, gm in zip(d_alpha, outer[0], outer[1], strict=True)
        ]
