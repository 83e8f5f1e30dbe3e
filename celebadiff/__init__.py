"""celebadiff: facial attribute editing with an attribute-conditioned diffusion model."""

__version__ = "0.1.0"
