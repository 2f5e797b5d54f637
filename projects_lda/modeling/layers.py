"""Layers shared by the LDA predictor and the peer predictors."""
from torch import nn
from torch.nn import functional as F

__all__ = ["NormedLinear", "make_classifier"]


class NormedLinear(nn.Linear):
    """``y = tau * <x / |x|, w_k / |w_k|> + b_k``: a cosine classifier with a temperature."""

    def __init__(self, in_features: int, out_features: int, temperature: float = 20.0,
                 eps: float = 1e-6):
        super().__init__(in_features, out_features)
        self.temperature = temperature
        self.eps = eps
        nn.init.normal_(self.weight, std=0.01)
        nn.init.constant_(self.bias, 0)

    def forward(self, x):
        w = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True) + self.eps)
        return F.linear(self.temperature * x, w, self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", temperature={self.temperature}"


def make_classifier(in_features: int, out_features: int, normed_linear: bool = False,
                    temperature: float = 20.0) -> nn.Linear:
    """
    A linear classifier with normal(0, 0.01) weights and zero bias (detectron2's initialisation
    of ``cls_score``), or a :class:`NormedLinear` with the given temperature.
    """
    if normed_linear:
        return NormedLinear(in_features, out_features, temperature=temperature)
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.constant_(layer.bias, 0)
    return layer
