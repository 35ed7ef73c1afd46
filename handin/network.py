"""The small CNN that is pretrained on one dataset and finetuned on another."""
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """Two convolutions shared by two linear heads.

    ``pretrainer`` classifies the pretraining dataset; ``generalizer`` classifies
    the finetuning dataset from the same 256 features. Finetuning trains only the
    generalizer, so the convolutions keep what pretraining taught them.

    Shapes for a ``[B, 1, 28, 28]`` input::

        conv1 (5x5)      -> [B, 8, 24, 24]   max-pool 2, relu -> [B, 8, 12, 12]
        conv2 (5x5)      -> [B, 16, 8, 8]    dropout, max-pool 2, relu -> [B, 16, 4, 4]
        flatten          -> [B, 256]
        pretrainer       -> [B, pre_train_classes]       then log_softmax
        generalizer      -> [B, generalization_classes]  then log_softmax

    Args:
        pre_train_classes: number of classes of the pretraining dataset.
        generalization_classes: number of classes of the finetuning dataset.
    """

    lin_size = 256

    def __init__(self, pre_train_classes, generalization_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.pretrainer = nn.Linear(self.lin_size, pre_train_classes)
        self.generalizer = nn.Linear(self.lin_size, generalization_classes)

    def apply_convs(self, x):
        """Compute the shared features.

        Each convolution is followed by a 2x2 max-pool and a relu; the second one
        also by ``self.conv2_drop``, so that dropout is active in ``train()``
        mode only.

        Args:
            x: images, float tensor ``[B, 1, 28, 28]``.

        Returns:
            features, float tensor ``[B, 256]``.
        """
        # *****START OF YOUR CODE*****
        # YOUR CODE HERE
        raise NotImplementedError()
        # *****END OF YOUR CODE*****

    def forward(self, x):
        """Classify into the pretraining classes.

        Args:
            x: images, float tensor ``[B, 1, 28, 28]``.

        Returns:
            log-probabilities from ``self.pretrainer``, ``[B, pre_train_classes]``.
        """
        # *****START OF YOUR CODE*****
        # YOUR CODE HERE
        raise NotImplementedError()
        # *****END OF YOUR CODE*****

    def generalize(self, x):
        """Classify into the finetuning classes.

        Args:
            x: images, float tensor ``[B, 1, 28, 28]``.

        Returns:
            log-probabilities from ``self.generalizer``, ``[B, generalization_classes]``.
        """
        # *****START OF YOUR CODE*****
        # YOUR CODE HERE
        raise NotImplementedError()
        # *****END OF YOUR CODE*****

    def finetune_parameters(self):
        """The parameters that finetuning may update.

        The finetuning code builds its optimizer from this list, so whatever is
        left out stays exactly as pretraining left it.

        Returns:
            list of ``nn.Parameter``: the generalizer head's weight and bias, and nothing else.
        """
        # *****START OF YOUR CODE*****
        # YOUR CODE HERE
        raise NotImplementedError()
        # *****END OF YOUR CODE*****
