"""The registry finds built-in and user PDEs, and user PDEs need only a residual."""

import pytest
import torch

import pirf.pdes
from pirf.errors import PirfError
from pirf.pdes import PDE, define_pde
from pirf.pdes.elliptic import interior, laplacian_5pt
from pirf.seeding import unit_generators

BUILTINS = ["burgers", "darcy", "helmholtz", "kolmogorov", "poisson"]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_resolve_and_describe_themselves(name):
    pde = pirf.pdes.get(name)
    assert pde.name == name
    assert pde.can_generate
    meta = pde.metadata()
    assert meta["pde"] == name and meta["channels"] == list(pde.channels)
    assert {"tiny", "small", "paper"} <= set(type(pde).presets)


def test_unknown_pde_lists_the_known_ones():
    with pytest.raises(PirfError) as error:
        pirf.pdes.get("navier")
    message = str(error.value)
    assert "unknown PDE 'navier'" in message
    assert all(name in message for name in BUILTINS)


def test_unknown_parameter_is_a_clear_error():
    with pytest.raises(PirfError, match="unknown parameter"):
        pirf.pdes.get("poisson", viscosity=1.0)


class Laplace(PDE):
    """A user PDE written as a subclass: only the residual is required."""

    name = "laplace-test"
    channels = ("u",)
    min_resolution = 4

    def residual(self, fields):
        return laplacian_5pt(fields[:, :1])


def test_user_subclass_registers_and_computes_residuals():
    pirf.pdes.register(Laplace, replace=True)
    pde = pirf.pdes.get("laplace-test")
    assert "laplace-test" in pirf.pdes.names()
    assert not pde.can_generate
    x, y = pde.grid.mesh((9, 9))
    harmonic = (x**2 - y**2).unsqueeze(0).unsqueeze(0)
    assert pde.residual(harmonic).abs().max() < 1e-10
    with pytest.raises(PirfError, match="no input sampler"):
        pde.generate(unit_generators(0, 0, [0]), 9)


def test_define_pde_from_functions_generates_data():
    def sample(generators, resolution):
        return torch.stack([torch.rand(1, resolution, resolution, generator=g) for g in generators])

    def solve(inputs):
        return torch.cat([inputs, 2 * inputs], dim=1)

    Doubling = define_pde(
        "doubling-test",
        ("a", "u"),
        lambda f: interior(f[:, 1:] - 2 * f[:, :1]),
        input_channels=("a",),
        sample_inputs=sample,
        solve=solve,
    )
    pirf.pdes.register(Doubling, replace=True)
    pde = pirf.pdes.get("doubling-test")
    assert pde.can_generate
    fields = pde.generate(unit_generators(1, 0, range(3)), 8)
    assert fields.shape == (3, 2, 8, 8)
    assert pde.residual(fields).abs().max() == 0
    # the inputs by default are the input channels; a hook may mark any entries instead
    assert pde.input_mask(8, 8)[0].all() and not pde.input_mask(8, 8)[1].any()

    def first_row(height, width):
        mask = torch.zeros((1, height, width), dtype=torch.bool)
        mask[0, 0] = True
        return mask

    Evolving = define_pde(
        "evolving-test", ("u",), lambda f: f[:, :, 1:] - f[:, :, :-1], input_mask=first_row,
        register=False,
    )  # fmt: skip
    assert Evolving().has_inputs and int(Evolving().input_mask(8, 6).sum()) == 6
    assert not define_pde("plain-test", ("u",), lambda f: f, register=False)().has_inputs


def test_module_colon_class_imports_a_user_pde():
    pde = pirf.pdes.get("tests.pdes.test_registry:Laplace")
    assert isinstance(pde, Laplace)
    with pytest.raises(PirfError, match="cannot import"):
        pirf.pdes.get("no_such_module:Thing")
