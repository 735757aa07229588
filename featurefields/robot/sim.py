"""Grasps executed in physics (MuJoCo) on ground-truth meshes: does the object come up, and stay up?

The scene: the table as a static box, every object a free body made of convex pieces (CoACD's approximate convex
decomposition of its mesh: MuJoCo collides the convex hull of each mesh geom, so a mug given whole would be solid
inside and a rim grasp impossible), masses from the pieces' volume at one stated density. The gripper floats:
its base is welded (soft constraint) to a kinematic mocap body that follows the trajectory, gravity compensated,
and its two fingers are prismatic joints driven by force-limited position servos (the gripper's grip force).

Protocol (every number is a field of :class:`SimConfig`): start 10 cm back along the approach with the fingers
at the grasp's opening; approach in 1 s; close for 1 s; lift 15 cm straight up in 1.5 s; shake (tugs of 3 cm
along x, then y, twice each, and a +-0.3 rad twist about the vertical, 0.25 s per stroke); hold 2 s. Success:
the object is still touched by both fingers and its lowest point is more than 10 cm above the table.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .gripper import ParallelJaw

DEFAULT_DENSITY = 500.0  # kg/m^3 for every object: light wood; a 19 x 7 x 28 cm solid box weighs 1.9 kg


@dataclass
class SimConfig:
    density: float = DEFAULT_DENSITY  # kg/m^3, for every object
    friction: float | None = None  # pad and object friction (None: the gripper's own coefficient)
    timestep: float = 0.002  # s
    pregrasp: float = 0.10  # m back along the approach to start from
    approach_s: float = 1.0
    close_s: float = 1.0
    lift: float = 0.15  # m
    lift_s: float = 1.5
    shake: float = 0.03  # m per tug
    twist: float = 0.3  # rad
    stroke_s: float = 0.25
    hold_s: float = 2.0
    success_height: float = 0.10  # m above the table, lowest point of the object
    coacd_threshold: float = 0.05  # CoACD concavity threshold (smaller: more pieces)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimObject:
    """A rigid body of the simulated scene: its mesh in its local frame and its pose."""

    name: str
    vertices: np.ndarray  # [V, 3] local frame
    triangles: np.ndarray  # [F, 3]
    pose: np.ndarray  # [4, 4] local-to-world
    free: bool = True  # False: static (part of the world)


@dataclass
class SimOutcome:
    success: bool
    lifted_m: float  # lowest point of the object above the table at the end
    fingers_touching: int  # how many fingers touch the object at the end
    stage_reached: str  # the last stage the object survived (approach, close, lift, shake, hold)
    object_mass_kg: float
    frames: dict = dc_field(default_factory=dict, repr=False)  # stage -> [H, W, 3] uint8 picture (if rendered)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "frames"}


def convex_pieces(vertices: np.ndarray, triangles: np.ndarray, threshold: float = 0.05,
                  cache_dir: str | Path | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Convex pieces of a mesh: itself if it is (nearly) convex, else CoACD's decomposition, cached on disk by the
    mesh's content (a mug takes CoACD tens of seconds)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, triangles, process=True)
    hull = mesh.convex_hull
    if mesh.is_volume and mesh.volume > 0.98 * hull.volume:
        return [(np.asarray(hull.vertices), np.asarray(hull.faces))]
    key = hashlib.sha1(np.ascontiguousarray(vertices, np.float64).tobytes()
                       + np.ascontiguousarray(triangles, np.int64).tobytes() + repr(threshold).encode()).hexdigest()
    cache = Path(cache_dir or Path.home() / ".cache" / "featurefields" / "coacd") / f"{key}.npz"
    if cache.is_file():
        data = np.load(cache)
        return [(data[f"v{i}"], data[f"f{i}"]) for i in range(int(data["n"]))]
    import coacd

    coacd.set_log_level("error")
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(vertices, np.float64), np.asarray(triangles, np.int64)),
                            threshold=threshold, seed=0)
    pieces = [(np.asarray(v, np.float64), np.asarray(f, np.int64)) for v, f in parts]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, n=len(pieces), **{f"v{i}": v for i, (v, _) in enumerate(pieces)},
             **{f"f{i}": f for i, (_, f) in enumerate(pieces)})
    os.replace(tmp, cache)
    return pieces


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def _fmt(a) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.ravel(a))


def build_mjcf(objects: list[SimObject], table: tuple[np.ndarray, np.ndarray], gripper: ParallelJaw,
               grasp_pose: np.ndarray, opening: float, cfg: SimConfig, cache_dir=None) -> tuple[str, dict]:
    """The MJCF scene and what the runner needs to know about it (object geom names, masses)."""
    mu = cfg.friction if cfg.friction is not None else gripper.friction
    assets, bodies, info = [], [], {"object_geoms": {}}
    for obj in objects:
        pieces = convex_pieces(obj.vertices, obj.triangles, cfg.coacd_threshold, cache_dir)
        geoms = []
        for i, (v, f) in enumerate(pieces):
            name = f"{obj.name}_{i}"
            assets.append(f'<mesh name="{name}" vertex="{_fmt(v)}" face="{_fmt(f)}"/>')
            geoms.append(f'<geom name="g_{name}" type="mesh" mesh="{name}" density="{cfg.density}" '
                         f'rgba="0.7 0.7 0.75 1"/>')
        info["object_geoms"][obj.name] = [f"g_{obj.name}_{i}" for i in range(len(pieces))]
        pos, quat = obj.pose[:3, 3], _quat_wxyz(obj.pose[:3, :3])
        joint = "<freejoint/>" if obj.free else ""
        bodies.append(f'<body name="{obj.name}" pos="{_fmt(pos)}" quat="{_fmt(quat)}">{joint}{"".join(geoms)}</body>')
    lo, hi = table
    t_center, t_half = (lo + hi) / 2, (hi - lo) / 2
    pre = grasp_pose.copy()
    pre[:3, 3] = grasp_pose[:3, 3] - cfg.pregrasp * grasp_pose[:3, 2]
    gpos, gquat = pre[:3, 3], _quat_wxyz(pre[:3, :3])
    boxes = {name: (c, e) for name, c, e in gripper.boxes(gripper.max_width)}
    (c1, e1), (c2, _), (cp, ep) = boxes["finger_1"], boxes["finger_2"], boxes["palm"]
    half_travel = gripper.max_width / 2
    q_open = (gripper.max_width - opening) / 2
    kp = 4.0 * gripper.force / 0.01  # saturates at the force limit once the pads are 2.5 mm into the object
    xml = f"""<mujoco model="ff-grasp">
  <option timestep="{cfg.timestep}" gravity="0 0 -9.81" cone="elliptic" impratio="10" noslip_iterations="4"/>
  <default><geom condim="4" friction="{mu} 0.005 0.0001" solref="0.004 1" solimp="0.95 0.99 0.001"/></default>
  <visual><global offwidth="640" offheight="480"/><headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5"/></visual>
  <asset>{"".join(assets)}</asset>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1" diffuse="0.8 0.8 0.8"/>
    <geom name="table" type="box" pos="{_fmt(t_center)}" size="{_fmt(t_half)}" rgba="0.55 0.4 0.25 1"/>
    {"".join(bodies)}
    <body name="target" mocap="true" pos="{_fmt(gpos)}" quat="{_fmt(gquat)}"/>
    <body name="gripper" pos="{_fmt(gpos)}" quat="{_fmt(gquat)}" gravcomp="1">
      <freejoint/>
      <geom name="palm" type="box" pos="{_fmt(cp)}" size="{_fmt(ep / 2)}" mass="0.6" rgba="0.3 0.3 0.35 1"/>
      <body name="finger_1" pos="{_fmt(c1)}" gravcomp="1">
        <joint name="j1" type="slide" axis="1 0 0" range="0 {half_travel}" damping="40"/>
        <geom name="finger_1" type="box" size="{_fmt(e1 / 2)}" mass="0.05" rgba="0.2 0.6 0.9 1"/>
      </body>
      <body name="finger_2" pos="{_fmt(c2)}" gravcomp="1">
        <joint name="j2" type="slide" axis="-1 0 0" range="0 {half_travel}" damping="40"/>
        <geom name="finger_2" type="box" size="{_fmt(e1 / 2)}" mass="0.05" rgba="0.2 0.6 0.9 1"/>
      </body>
    </body>
  </worldbody>
  <equality><weld body1="target" body2="gripper" solref="0.01 1"/></equality>
  <contact><exclude body1="gripper" body2="finger_1"/><exclude body1="gripper" body2="finger_2"/></contact>
  <actuator>
    <position name="a1" joint="j1" kp="{kp}" forcerange="{-gripper.force} {gripper.force}" ctrlrange="0 {half_travel}"/>
    <position name="a2" joint="j2" kp="{kp}" forcerange="{-gripper.force} {gripper.force}" ctrlrange="0 {half_travel}"/>
  </actuator>
</mujoco>"""
    info.update(q_open=q_open, q_closed=half_travel, table_top=float(hi[2]))
    return xml, info


def simulate_grasp(objects: list[SimObject], target: str, table: tuple[np.ndarray, np.ndarray],
                   gripper: ParallelJaw, grasp_pose: np.ndarray, opening: float, cfg: SimConfig | None = None,
                   render: bool = False, cache_dir=None) -> SimOutcome:
    """Run the protocol of the module docstring for one grasp of ``objects[target]``. ``table``: (lo [3], hi [3])
    of the static table box; ``grasp_pose`` [4, 4] in the grasp-frame convention of :class:`~.grasps.Grasp`."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    cfg = cfg or SimConfig()
    if target not in [o.name for o in objects]:
        raise DataError(f"no object {target!r} in the simulated scene")
    xml, info = build_mjcf(objects, table, gripper, np.asarray(grasp_pose, float), opening, cfg, cache_dir)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    body = model.body(target).id
    j1, j2 = model.joint("j1").qposadr[0], model.joint("j2").qposadr[0]
    data.qpos[j1] = data.qpos[j2] = info["q_open"]
    data.ctrl[:] = info["q_open"]
    mujoco.mj_forward(model, data)
    obj = next(o for o in objects if o.name == target)
    verts = np.asarray(obj.vertices, float)
    geoms = {model.geom(n).id for n in info["object_geoms"][target]}
    fingers = {model.geom("finger_1").id, model.geom("finger_2").id}
    renderer = _renderer(mujoco, model) if render else None
    frames: dict = {}
    mocap = model.body("target").mocapid[0]
    start_pos = data.mocap_pos[mocap].copy()
    grasp_pos = np.asarray(grasp_pose, float)[:3, 3]

    def run(seconds: float, pos_fn=None, quat_fn=None):
        n = max(1, int(round(seconds / cfg.timestep)))
        for k in range(n):
            s = (k + 1) / n
            if pos_fn is not None:
                data.mocap_pos[mocap] = pos_fn(s)
            if quat_fn is not None:
                data.mocap_quat[mocap] = quat_fn(s)
            mujoco.mj_step(model, data)

    def lowest() -> float:
        R = data.xmat[body].reshape(3, 3)
        return float((verts @ R.T + data.xpos[body])[:, 2].min()) - info["table_top"]

    def touching() -> int:
        hit = set()
        for c in data.contact[:data.ncon]:
            pair = {int(c.geom1), int(c.geom2)}
            for f in fingers:
                if f in pair and pair & geoms:
                    hit.add(f)
        return len(hit)

    stage = "start"
    run(0.2)  # let the scene settle
    run(cfg.approach_s, lambda s: start_pos + s * (grasp_pos - start_pos))
    stage = "approach"
    data.ctrl[:] = info["q_closed"]
    run(cfg.close_s)
    stage = "close"
    up = np.array([0.0, 0.0, 1.0])
    lifted = grasp_pos + cfg.lift * up
    run(cfg.lift_s, lambda s: grasp_pos + _smooth(s) * cfg.lift * up)
    if renderer is not None:
        frames["lift"] = _render(renderer, data, model, lifted)
    if lowest() > 0.5 * cfg.lift and touching() == 2:
        stage = "lift"
    for axis in (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])):
        for sign in (1, -1, 1, -1):
            here = data.mocap_pos[mocap].copy()
            goal = lifted + sign * cfg.shake * axis
            run(cfg.stroke_s, lambda s, a=here, b=goal: a + _smooth(s) * (b - a))
        run(cfg.stroke_s, lambda s, a=data.mocap_pos[mocap].copy(): a + _smooth(s) * (lifted - a))
    q0 = data.mocap_quat[mocap].copy()
    for angle in (cfg.twist, -cfg.twist, cfg.twist, 0.0):
        qa = data.mocap_quat[mocap].copy()
        qb = _quat_mul(_axis_quat(up, angle), q0)
        run(cfg.stroke_s, quat_fn=lambda s, a=qa, b=qb: _nlerp(a, b, _smooth(s)))
    if stage == "lift" and lowest() > 0.5 * cfg.lift and touching() == 2:
        stage = "shake"
    run(cfg.hold_s)
    height, touch = lowest(), touching()
    success = bool(height > cfg.success_height and touch == 2)
    if success:
        stage = "hold"
    if renderer is not None:
        frames["end"] = _render(renderer, data, model, data.mocap_pos[mocap])
        renderer.close()
    mass = float(model.body_subtreemass[body])
    return SimOutcome(success, height, touch, stage, mass, frames)


def _smooth(s: float) -> float:
    return s * s * (3 - 2 * s)


def _axis_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    return np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _nlerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    if float(a @ b) < 0:
        b = -b
    q = (1 - s) * a + s * b
    return q / np.linalg.norm(q)


def _renderer(mujoco, model):
    try:
        return mujoco.Renderer(model, 360, 480)
    except Exception:  # noqa: BLE001 - no OpenGL here: outcomes without pictures
        return None


def _render(renderer, data, model, look_at: np.ndarray) -> np.ndarray | None:
    import mujoco

    cam = mujoco.MjvCamera()
    cam.lookat[:] = look_at
    cam.distance, cam.azimuth, cam.elevation = 0.7, 135.0, -25.0
    try:
        renderer.update_scene(data, camera=cam)
        return renderer.render().copy()
    except Exception:  # noqa: BLE001
        return None
