from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_lda_config(cfg):
    """
    Add the config keys of LDA (Long-tailed Distribution Adaptation) to a detectron2 config.

    Symbols refer to the paper (ACM MM 2021); "released code" is the authors' classification code.
    Where the two disagree, the default follows the paper and the other choice stays reachable.
    """
    _C = cfg
    _C.MODEL.LDA = CN()
    # gamma (Eq. 6): exponent of the self-adaptive balance factor
    # alpha = max(0, acc_u - acc_b) ** gamma. 1.5 for LVIS (paper 4.2); 2.0 on ImageNet-LT.
    _C.MODEL.LDA.GAMMA = 1.5
    # lambda (Eq. 9): weight of the domain-divergence terms, lambda * (L_intra + L_inter).
    # 0.1 for LVIS (paper 4.2). 0 disables the projection-head losses (empirical risks only).
    _C.MODEL.LDA.LAMBDA = 0.1
    # m (Eq. 8): margin of the inter-class hinge max(0, m - (1 - cos(mu_j, mu_k))). 1 in the paper.
    _C.MODEL.LDA.MARGIN = 1.0
    # Pair weighting of Eq. 8: "mean" = plain mean over the c(c-1) ordered pairs of classes in the
    # batch (released code's default); "class_weight" = pairs weighted by w_j + w_k, the Eq. 5
    # class weights, normalised by their sum (the paper's text).
    _C.MODEL.LDA.INTER_WEIGHTING = "mean"
    # Window of Eq. 6: training accuracies acc_u, acc_b are measured over the foreground samples
    # of the last WINDOW mini-batches (released code: 100), summed over all workers.
    _C.MODEL.LDA.WINDOW = 100
    # Units of acc_u, acc_b in Eq. 6: "fraction" (0-1, alpha <= 1; our default: keeps alpha * L_b
    # on the scale of the other detection losses) or "percent" (0-100 as in the released code,
    # alpha up to 100 ** gamma = 1000 for gamma = 1.5).
    _C.MODEL.LDA.ALPHA_UNITS = "fraction"
    # "adaptive": alpha from Eq. 6; "fixed": alpha = FIXED_ALPHA at every iteration (ablation).
    _C.MODEL.LDA.ALPHA_MODE = "adaptive"
    _C.MODEL.LDA.FIXED_ALPHA = 1.0
    # Extra factor on alpha * L_b in Eq. 9 (the released code uses 2.0 with its percent alpha and
    # summed L_b). With alpha in fractions (a gap of 0.2-0.3 gives alpha = 0.09-0.16 at
    # gamma = 1.5), a factor of 1 leaves g_b nearly untrained: on the embedded dataset its
    # training accuracy stayed 25 points under g_u's and AP matched the baseline's. 5.0 puts
    # factor * alpha at 0.5-0.8, the range of the released code's effective weight on
    # ImageNet-LT (percent alpha times its n/N-scaled sum: about 0.4-1.8), and gave +6 AP and
    # +11 APr over the factor of 1 there (see README, "Choosing the scale of the balanced loss").
    _C.MODEL.LDA.BALANCED_LOSS_FACTOR = 5.0
    # Scale of the balanced risk (Eq. 5): "mean" = (1/n) sum_i beta(y_i) CE_i with
    # beta(k) = (1/C') / (n_k/N) (the paper; E_u[beta] = 1, so L_b is on the scale of a CE);
    # "sum" = sum_i CE_i / (C' n_k) as in the released code (n/N times the mean form: on
    # detection-sized datasets this all but switches the balanced classifier off).
    _C.MODEL.LDA.BALANCED_LOSS_NORM = "mean"
    # Denominator of the foreground losses L_u and L_b (sums over the foreground proposals):
    # "proposals" = the number of all sampled proposals R, as detectron2 normalises its
    # classification and box regression losses (each foreground sample has the same influence
    # whatever the batch's foreground fraction; our default), or "foreground" = the number of
    # foreground proposals (a plain mean over the foreground, as in classification). With about
    # 25% foreground, "foreground" makes the per-sample gradients of g_u and g_b about 4x larger
    # than the baseline's classifier gets; on the embedded dataset that slowed the shared
    # features down (mask and RPN losses stayed about twice the baseline's).
    _C.MODEL.LDA.FG_LOSS_NORMALIZER = "proposals"
    # Which class frequencies n_k define P_u in Eq. 5: "sampled" = the distribution the model
    # sees (annotation counts times the repeat factors of RepeatFactorTrainingSampler, when that
    # sampler is used) or "annotations" = raw instance counts. See projects_lda/class_freq.py.
    _C.MODEL.LDA.CLASS_FREQ_SOURCE = "sampled"
    # Projection head for the divergence losses (Eq. 7, 8): output dimension, and hidden width
    # of an optional two-layer MLP (0 = a single Linear layer, as in the paper's detector;
    # the released code offers 2048 -> 512 -> 128).
    _C.MODEL.LDA.PROJ_DIM = 128
    _C.MODEL.LDA.PROJ_HIDDEN_DIM = 0
    # Weights of the FgBg cross-entropy (all sampled proposals) and of the unbalanced classifier's
    # cross-entropy L_u (foreground proposals) in Eq. 9 / Appendix B. 1 in the paper.
    _C.MODEL.LDA.LOSS_WEIGHT_FGBG = 1.0
    _C.MODEL.LDA.LOSS_WEIGHT_UNBALANCED = 1.0
    # Not in the paper (an extension, off by default): make the FgBg, unbalanced and balanced
    # classifiers cosine classifiers, logit_k = TEMPERATURE * cos(h, w_k) + b_k, the normalized
    # linear layer of the Seesaw paper (MODEL.PEERS.SEESAW.NORMED_LINEAR). It removes the
    # weight-norm bias toward head classes by construction; see the README's benchmark section.
    _C.MODEL.LDA.NORMED_LINEAR = False
    # tau of the cosine classifiers when NORMED_LINEAR is True (20, as for Seesaw).
    _C.MODEL.LDA.TEMPERATURE = 20.0


def get_project_cfg():
    """detectron2's default config with the keys of LDA, the peer methods and the evaluation."""
    from .evaluation import add_evaluation_config
    from .peers.config import add_peers_config

    cfg = get_cfg()
    add_lda_config(cfg)
    add_peers_config(cfg)
    add_evaluation_config(cfg)
    return cfg
