"""The reference code's residuals (``PDE.reference_residual``), checked against values
worked out by hand on tiny fields and against plain loops that spell out each stencil,
padding and spacing; and ``pirf evaluate --residual reference`` reports them with floors."""

from __future__ import annotations

import json
import math

import pytest
import torch

import pirf.data
import pirf.pdes
from pirf.cli import main
from pirf.pdes.darcy import central_difference_form
from pirf.pdes.reference import derivative, replicate_laplacian

F64 = torch.float64


def grid(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def tiny(name: str, **params: float) -> pirf.pdes.PDE:
    """PDE ``name`` accepting 4 x 4 fields (its stencils work there; the solvers do not)."""
    pde_class = pirf.pdes.get_class(name)
    return type(f"Tiny{pde_class.__name__}", (pde_class,), {"min_resolution": 4})(**params)


def test_poisson_and_helmholtz_pad_by_replication_with_nodal_spacing():
    u = grid([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]])
    a = torch.full((4, 4), 0.5, dtype=F64)
    # h = 1/3. Corner (0,0): every neighbour is 0 -> 0. Edge (0,1): the padded neighbour
    # is u[0,1] = 0, the others 0, 1 (below), 0 -> (1 - 0) * 9. Inside (1,1): 0 + 3 + 0 + 2
    # - 4 -> 9; (1,2): 0 + 4 + 1 + 0 - 8 -> -27; (2,1): 1 + 0 + 0 + 4 - 12 -> -63;
    # (2,2): 2 + 0 + 3 + 0 - 16 -> -99. Edge (1,0): 0 + 0 + 0(pad) + 1 - 0 -> 9.
    laplacian = grid(
        [[0, 9, 18, 0], [9, 9, -27, 18], [27, -63, -99, 36], [0, 27, 36, 0]]
    )
    poisson = tiny("poisson").reference_residual(torch.stack([a, u])[None])
    assert torch.equal(poisson[0, 0], laplacian - 0.5)
    helmholtz = tiny("helmholtz", wavenumber=2.0)
    assert torch.equal(
        helmholtz.reference_residual(torch.stack([a, u])[None])[0, 0], laplacian + 4 * u - 0.5
    )
    assert torch.equal(replicate_laplacian(u, 1 / 3), laplacian)


def test_poisson_reference_equals_the_own_residual_inside():
    generator = torch.Generator().manual_seed(0)
    fields = torch.randn(3, 2, 9, 9, dtype=F64, generator=generator)
    for name in ("poisson", "helmholtz"):
        pde = pirf.pdes.get(name)
        inside = pde.reference_residual(fields)[..., 1:-1, 1:-1]
        assert torch.allclose(inside, pde.residual(fields), rtol=1e-13, atol=1e-10)


def test_one_sided_stencils_of_second_order():
    # u = i^3 on 4 points, h = 1: central first derivative (3 i^2 + 1) inside; ends
    # (-1.5*0 + 2*1 - 0.5*8) = -2 and -(-1.5*27 + 2*8 - 0.5*1) = 25. Second: 6 i inside;
    # ends (2*0 - 5*1 + 4*8 - 27) = 0 and (2*27 - 5*8 + 4*1 - 0) = 18.
    u = torch.tensor([0.0, 1.0, 8.0, 27.0], dtype=F64)
    assert derivative(u, -1, 1.0, 1).tolist() == [-2.0, 4.0, 13.0, 25.0]
    assert derivative(u, -1, 1.0, 2).tolist() == [0.0, 6.0, 12.0, 18.0]
    assert derivative(u[:, None], 0, 0.5, 1).flatten().tolist() == [-4.0, 8.0, 26.0, 50.0]


def test_darcy_reference_by_hand_and_inside_as_the_central_form():
    # u = i^2 + j^2 and a = 1 + j on 4 x 4, h = 1/4: every stencil is exact for these, so
    # u_xx = u_yy = 32, u_y = 8 j, a_y = 4, a_x = 0 and the residual is
    # -(1 + j) * 64 - 32 j - forcing.
    i, j = torch.meshgrid(torch.arange(4, dtype=F64), torch.arange(4, dtype=F64), indexing="ij")
    u, a = i**2 + j**2, 1 + j
    pde = tiny("darcy", forcing=2.0)
    residual = pde.reference_residual(torch.stack([a, u])[None])[0, 0]
    assert torch.equal(residual, -(1 + j) * 64 - 32 * j - 2.0)
    # Inside, it is the central-difference form at h = 1/R instead of 1/(R-1).
    generator = torch.Generator().manual_seed(1)
    a = 3 + 9 * torch.rand(2, 10, 10, dtype=F64, generator=generator)
    u = torch.randn(2, 10, 10, dtype=F64, generator=generator)
    inside = pirf.pdes.get("darcy").reference_residual(torch.stack([a, u], dim=1))
    expected = central_difference_form(a, u) * (10 / 9) ** 2 - 1.0  # every term ~ 1/h^2
    assert torch.allclose(inside[:, 0, 1:-1, 1:-1], expected, rtol=1e-12, atol=1e-9)


def burgers_by_loops(u: list[list[float]], nu: float) -> list[list[float]]:
    """The reference stencil with explicit clamped indices (replicate padding)."""
    n = len(u)
    h = 1.0 / n

    def at(t: int, x: int) -> float:
        return u[min(max(t, 0), n - 1)][min(max(x, 0), n - 1)]

    def u_x(t: int, x: int) -> float:
        x = min(max(x, 0), n - 1)  # u_x is padded by replication too
        return (at(t, x + 1) - at(t, x - 1)) / (2 * h)

    out = []
    for t in range(n):
        row = []
        for x in range(n):
            u_t = (at(t + 1, x) - at(t - 1, x)) / (2 * h)
            u_xx = (u_x(t, x + 1) - u_x(t, x - 1)) / (2 * h)
            row.append(u_t + at(t, x) * u_x(t, x) - nu * u_xx)
        out.append(row)
    return out


def test_burgers_reference_by_hand_and_by_loops():
    # u = x index + 2 t index on 4 x 4 (dt = dx = 1/4): u_t = 8 inside, 4 on the first and
    # last level; u_x = 4 inside, 2 at both ends; u_xx = (4 - 2) / (2/4) = 4 at x = 0, 1 and
    # -4 at x = 2, 3.
    t, x = torch.meshgrid(torch.arange(4, dtype=F64), torch.arange(4, dtype=F64), indexing="ij")
    u = x + 2 * t
    pde = tiny("burgers", viscosity=0.5)
    residual = pde.reference_residual(u[None, None])[0, 0]
    u_t = torch.tensor([4.0, 8.0, 8.0, 4.0], dtype=F64)[:, None]
    u_x = torch.tensor([2.0, 4.0, 4.0, 2.0], dtype=F64)
    u_xx = torch.tensor([4.0, 4.0, -4.0, -4.0], dtype=F64)
    assert torch.equal(residual, u_t + u * u_x - 0.5 * u_xx)
    generator = torch.Generator().manual_seed(2)
    field = torch.randn(8, 8, dtype=F64, generator=generator)
    loops = torch.tensor(burgers_by_loops(field.tolist(), 0.01), dtype=F64)
    reference = pirf.pdes.get("burgers").reference_residual(field[None, None])[0, 0]
    assert torch.allclose(reference, loops, rtol=1e-12, atol=1e-12)


def test_kolmogorov_reference_by_hand():
    """w1 = c + cos x + cos 2y: psi = cos x + cos(2y)/4, v = (-sin(2y)/2, sin x), and
    v . grad w1 = -1.5 sin x sin 2y; lap w1 = -cos x - 4 cos 2y, but the reference's mean
    mode of the Laplacian is -c (it sets |k|^2 = 1 there)."""
    p = {"reynolds": 7.0, "drag": 0.3, "forcing_amplitude": 2.0, "forcing_wavenumber": 1}
    pde = pirf.pdes.get("kolmogorov", frame_dt=0.25, **p)
    n, c, s = 16, 0.7, 0.1
    x, y = pde.grid.mesh((n, n))
    w1 = c + torch.cos(x) + torch.cos(2 * y)
    fields = torch.stack([w1 - s, w1, w1 + s])[None]
    expected = (
        s / 0.25
        - 1.5 * torch.sin(x) * torch.sin(2 * y)
        + (c + torch.cos(x) + 4 * torch.cos(2 * y)) / 7.0
        + 0.3 * w1
        + 2.0 * torch.cos(y)
    )
    reference = pde.reference_residual(fields)[0, 0]
    assert torch.allclose(reference, expected, rtol=0, atol=1e-12)
    own = pde.residual(fields)[0, 0]  # pirf's mean Laplacian is 0: the difference is c / Re
    assert torch.allclose(reference - own, torch.full_like(own, c / 7.0), atol=1e-12)


def test_pdes_without_a_reference_say_so():
    toy = pirf.pdes.define_pde("no-reference-test", ("u",), lambda f: f)()
    assert not toy.has_reference_residual
    for name in ("poisson", "helmholtz", "darcy", "burgers", "kolmogorov"):
        assert pirf.pdes.get(name).has_reference_residual


@pytest.fixture(scope="module")
def poisson_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference-residual")
    pirf.data.generate("poisson", 8, 16, 0, root / "test.h5", split="test")
    pirf.data.generate("poisson", 4, 16, 0, root / "val.h5", split="val")
    return root


def test_evaluate_reports_the_reference_residual_with_its_floor(poisson_files, capsys):
    root = poisson_files
    code = main(["evaluate", "--samples", str(root / "val.h5"), "--reference",
                 str(root / "test.h5"), "--residual", "reference", "--no-consistency",
                 "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    floor = report["ground_truth"]["metrics"]["physics"]["reference_residual"]
    row = report["rows"][0]["metrics"]["physics"]["reference_residual"]
    assert floor["definition"] == row["definition"] == "reference"
    assert floor["points"] == row["points"] == 16 * 16  # every pixel
    # Exact data: pirf's residual at rounding, the reference one not (its boundary ring).
    assert report["rows"][0]["headline"]["residual_mse"] < 1e-9
    assert row["mse"]["mean"] > 1e-3 and floor["mse"]["mean"] > 1e-3
    assert report["ground_truth"]["headline"]["reference_mse"] == floor["mse"]["mean"]
    assert "reference MSE" in report["markdown"]
    data = pirf.data.load(root / "val.h5")
    fields = data.fields().double()
    by_hand = data.pde.reference_residual(fields).pow(2).flatten(1).mean(1).mean()
    assert math.isclose(row["mse"]["mean"], float(by_hand), rel_tol=1e-12)


def test_evaluate_refuses_a_reference_residual_a_pde_lacks(tmp_path, capsys):
    pirf.pdes.define_pde("plain-reference-test", ("u",), lambda f: f, min_resolution=4)
    pde = pirf.pdes.get("plain-reference-test")
    generator = torch.Generator().manual_seed(0)
    for name, n in (("ref.h5", 8), ("s.h5", 4)):
        fields = torch.randn(n, 1, 8, 8, generator=generator)
        pirf.data.write_fields(tmp_path / name, fields, pde)
    code = main(["evaluate", "--samples", str(tmp_path / "s.h5"), "--reference",
                 str(tmp_path / "ref.h5"), "--residual", "reference", "--out-file",
                 str(tmp_path / "r.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "PDE 'plain-reference-test' has no reference residual" in err
    assert not (tmp_path / "r.json").exists()
