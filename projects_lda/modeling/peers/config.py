from detectron2.config import CfgNode as CN

__all__ = ["add_peers_config"]


def add_peers_config(cfg):
    """
    Add the config keys of the peer long-tail methods (``cfg.MODEL.PEERS.<METHOD>.*``), one node
    per method. Defaults are each paper's LVIS settings (or its released code's, where the paper
    gives none). A method is selected by ``MODEL.ROI_HEADS.NAME``: ``FedLossROIHeads``,
    ``EQLv2ROIHeads``, ``SeesawROIHeads`` or ``BalancedSoftmaxROIHeads``.
    """
    _C = cfg
    _C.MODEL.PEERS = CN()

    # ---------------------------------------------------------------- federated loss
    # Zhou, Koltun, Kraehenbuehl, "Probabilistic two-stage detection" (2021): sigmoid cross-entropy
    # over a subset S of classes, the classes present in the batch plus sampled negatives.
    _C.MODEL.PEERS.FED_LOSS = CN()
    # |S|: number of classes in S, positives included (50 for LVIS, as detectron2's
    # MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES). When the batch holds more positive classes, S is
    # just the positives; when C <= NUM_CLASSES, S is every class with a training image (a plain
    # sigmoid CE).
    _C.MODEL.PEERS.FED_LOSS.NUM_CLASSES = 50
    # Negatives are sampled without replacement with probability proportional to
    # image_count ** FREQ_WEIGHT_POWER (0.5 for LVIS, detectron2's FED_LOSS_FREQ_WEIGHT_POWER);
    # image_count = number of training images holding the class.
    _C.MODEL.PEERS.FED_LOSS.FREQ_WEIGHT_POWER = 0.5
    # Initial probability of every class's sigmoid: the classifier bias starts at
    # log(p / (1 - p)) (0.01 as in the authors' CenterNet2 code; keeps the sum of C sigmoid
    # losses small at the start of training).
    _C.MODEL.PEERS.FED_LOSS.PRIOR_PROB = 0.01

    # ---------------------------------------------------------------- EQLv2
    # Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for Long-tailed Object
    # Detection" (CVPR 2021). Positive / negative gradients of class j are reweighted by
    # q_j = 1 + ALPHA * (1 - f(g_j)) and r_j = f(g_j), with g_j the accumulated ratio of
    # positive to negative gradients and f(x) = 1 / (1 + exp(-GAMMA * (x - MU))).
    _C.MODEL.PEERS.EQLV2 = CN()
    # gamma: steepness of the mapping f (12 in the paper).
    _C.MODEL.PEERS.EQLV2.GAMMA = 12.0
    # mu: centre of f, the gradient ratio at which a class gets r = 0.5 (0.8 in the paper).
    _C.MODEL.PEERS.EQLV2.MU = 0.8
    # alpha: extra weight of the positive gradients of under-trained classes (4.0 in the paper).
    _C.MODEL.PEERS.EQLV2.ALPHA = 4.0
    # Initial probability of every class's sigmoid (bias log(p / (1 - p))). 0.5 = bias 0, as in
    # the authors' released code; the background (objectness) logit always starts at bias 0.
    _C.MODEL.PEERS.EQLV2.PRIOR_PROB = 0.5

    # ---------------------------------------------------------------- Seesaw loss
    # Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation" (CVPR 2021): softmax CE in
    # which the logit of each other class j is scaled by S_ij = M_ij * C_ij for a sample of
    # class i; foreground vs background is a separate 2-way objectness classifier.
    _C.MODEL.PEERS.SEESAW = CN()
    # p: mitigation factor M_ij = (N_j / N_i) ** P when N_j < N_i, else 1, with N the numbers
    # of foreground proposals of each class accumulated during training (0.8 in the paper).
    _C.MODEL.PEERS.SEESAW.P = 0.8
    # q: compensation factor C_ij = (sigma_j / sigma_i) ** Q when sigma_j > sigma_i, else 1, with
    # sigma the softmax probabilities of the sample (2.0 in the paper).
    _C.MODEL.PEERS.SEESAW.Q = 2.0
    # Lower bound on sigma_i in the ratio of C_ij (1e-2, mmdetection's default).
    _C.MODEL.PEERS.SEESAW.EPS = 0.01
    # Normalized linear classifier (cosine similarity of feature and class weight, times
    # TEMPERATURE, plus a bias), as in the paper's LVIS models; False: a plain linear layer.
    _C.MODEL.PEERS.SEESAW.NORMED_LINEAR = True
    # tau of the normalized linear classifier (20, mmdetection's Seesaw LVIS configs).
    _C.MODEL.PEERS.SEESAW.TEMPERATURE = 20.0

    # ---------------------------------------------------------------- balanced softmax
    # Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition" (NeurIPS 2020):
    # softmax CE on logits + log(prior ratio) during training, plain logits at test time.
    _C.MODEL.PEERS.BALANCED_SOFTMAX = CN()
    # Which class frequencies n_j define the training prior: "sampled" = annotation counts
    # times the repeat factors of RepeatFactorTrainingSampler (the distribution the classifier
    # sees; equal to the counts with another sampler), "annotations" = raw instance counts
    # (see projects_lda/data/class_freq.py). "sampled" avoids balancing twice under RFS.
    _C.MODEL.PEERS.BALANCED_SOFTMAX.FREQ_SOURCE = "sampled"
