"""The model-building kit: the parts a model plugin builds itself from.

- :mod:`~genbench.kit.nn`: network building blocks (MLP and convolutional stacks, DCGAN's
  initialisation, the Adam every model builds);
- :mod:`~genbench.kit.latent`: Gaussian latents, the KL, label inputs of conditional models;
- :mod:`~genbench.kit.observation`: observation models p(x|z) as torch.distributions;
- :mod:`~genbench.kit.adversarial`: the GAN step, its losses and its divergence check;
- :mod:`~genbench.kit.edits`: attribute edits, one API over every model that can make them.

The contract a model fulfils is :mod:`genbench.contract`, its registration
:func:`genbench.register_model`. The old paths (``genbench.nn``...) still import these modules.
"""
