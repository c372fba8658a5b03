"""Image-patch CPC (paper, section 3.2): Fashion-MNIST, a patch grid, a patch encoder and a
top-to-bottom context network. Everything downstream of the encoder is the shared core.

Importing this package registers its parts in :mod:`cpc.registry`: the patch encoder
(``model.encoder.name: patch_resnet``), the grid context networks (``masked_conv``, ``row_gru``),
the Fashion-MNIST data source (``data.name: fashion_mnist``), the ``cpc probe image`` command,
``cpc demo image`` and ``cpc compare`` on image recipes.
"""

from cpc import registry
from cpc.image.context import (
    MaskedConvContextConfig,
    RowGRUContextConfig,
    build_masked_conv_context,
    build_row_gru_context,
)
from cpc.image.encoder import PatchEncoderConfig, build_patch_encoder
from cpc.image.source import FashionMNISTConfig, FashionMNISTPatches

registry.register(
    "model.encoder", "patch_resnet", PatchEncoderConfig, build_patch_encoder
)  # patches (B, G, G, P, P) -> (B, G, G, C)
registry.register(
    "model.context", "masked_conv", MaskedConvContextConfig, build_masked_conv_context
)  # image grids, top to bottom
registry.register("model.context", "row_gru", RowGRUContextConfig, build_row_gru_context)
registry.register("data", "fashion_mnist", FashionMNISTConfig, FashionMNISTPatches)
registry.register_probe("image", "cpc.image.probe")
registry.register_demo("image", "cpc.image.demo")
registry.register_compare("fashion_mnist", "cpc.image.compare")
