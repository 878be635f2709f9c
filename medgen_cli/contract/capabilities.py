"""What a family can do at inference, as types: :class:`Sampling`, :class:`Interpolating`,
:class:`Reconstructing`.

A family inherits the capabilities it has, each parametrised by its options model, next to
:class:`~medgen_cli.contract.family.Family`::

    class DiffusionFamily(Family[DiffusionConfig], Sampling[DiffusionSampleOptions],
                          Interpolating[DiffusionInterpolateOptions]):
        sample_options = DiffusionSampleOptions
        def sample(self, opts: DiffusionSampleOptions, ctx: InferenceContext) -> Samples: ...

so a family's ``sample`` takes *its* options (no ``type: ignore[override]``), the engine asks
``isinstance(family, Sampling)`` instead of looking an attribute up, and a family without a
capability simply does not have the method. ``*_options`` is the options model the engine
validates a request against (the same classes the family's ``options.py`` lists in its
:class:`~medgen_cli.contract.options.FamilyOptions`, which the CLI reads without importing torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from medgen_cli.contract.options import InterpolateOptions, ReconOptions, SampleOptions

if TYPE_CHECKING:
    from medgen_cli.contract.context import InferenceContext
    from medgen_cli.contract.samples import Samples

S = TypeVar("S", bound=SampleOptions)
I = TypeVar("I", bound=InterpolateOptions)  # noqa: E741
R = TypeVar("R", bound=ReconOptions)


class Sampling(Generic[S]):
    """The family samples (``medgen sample``, :meth:`medgen_cli.api.Run.sample`)."""

    #: The options model of :meth:`sample`.
    sample_options: type[S]

    def sample(self, opts: S, ctx: InferenceContext) -> Samples:
        """``opts.num`` samples; sample ``i`` comes from seed ``opts.seed + i`` alone."""
        raise NotImplementedError


class Interpolating(Generic[I]):
    """The family interpolates between two seeds (``medgen interpolate``)."""

    #: The options model of :meth:`interpolate`.
    interpolate_options: type[I]

    def interpolate(self, opts: I, ctx: InferenceContext) -> Samples:
        """``opts.frames`` frames from the sample of ``opts.seed_a`` to that of ``opts.seed_b``."""
        raise NotImplementedError


class Reconstructing(Generic[R]):
    """The family reconstructs one input file (``medgen recon`` / ``medgen sample --input``)."""

    #: The options model of :meth:`recon`.
    recon_options: type[R]

    def recon(self, opts: R, ctx: InferenceContext) -> Samples:
        """The reconstruction of ``opts.input``."""
        raise NotImplementedError

    def recon_notes(self, opts: R) -> list[str]:
        """Lines a user reads before ``recon`` starts (e.g. the grid it works on); none by default."""
        return []


#: The capability of each option-model attribute (a family that sets one must inherit it).
CAPABILITY_OF: dict[str, type] = {"sample_options": Sampling, "interpolate_options": Interpolating,
                                  "recon_options": Reconstructing}
