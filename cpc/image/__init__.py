"""Image-patch CPC (paper, section 3.2): Fashion-MNIST, a patch grid, a patch encoder and a
top-to-bottom context network. Everything downstream of the encoder is the shared core."""
