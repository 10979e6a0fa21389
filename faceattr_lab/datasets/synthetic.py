"""A synthetic face generator that writes the four real datasets' on-disk layouts. Lab 00.

Every lab runs offline on data the kit makes itself: ``make_synthetic`` draws procedural faces
whose look depends on gender, age and race (face shape, hair, beard, skin tone, eye, nose and
lip proportions, children's proportions, wrinkles and grey hair) under nuisance variation (pose,
lighting, background, sensor noise, JPEG quality), and writes them exactly as UTKFace, FairFace,
AFAD-Full or Adience lie on disk, with a few of each dataset's real defects and a stated fraction
of deliberately wrong labels. ``synthetic_manifest.json`` in the root records the true latent
labels of every file, which labels were perturbed and which defects were inserted.

The latent truth uses FairFace's seven race groups, gender 0 = male / 1 = female, and age in
years 0..90. The same seed gives byte-identical files: each image's random generator derives
from ``(seed, index)``, PIL's JPEG encoder is deterministic and no wall-clock time is used.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["RACES", "LAYOUTS", "render_face", "make_synthetic", "synthetic_dataset",
           "ATTRIBUTES", "HAIR_STYLES", "attribute_faces"]

GENERATOR_VERSION = 3  # 3: long UTKFace dates, Adience repeats and a label-less row, AFAD to 72
MANIFEST = "synthetic_manifest.json"
LAYOUTS = ("utkface", "fairface", "afad", "adience")
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern")
MAX_AGE = 90

# UTKFace race codes: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
UTK_RACE = {"White": 0, "Black": 1, "East Asian": 2, "Southeast Asian": 2, "Indian": 3,
            "Latino_Hispanic": 4, "Middle Eastern": 4}
FAIRFACE_AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                       "more than 70")
FAIRFACE_AGE_EDGES = (0, 3, 10, 20, 30, 40, 50, 60, 70, MAX_AGE + 1)
ADIENCE_AGE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)",
                      "(48, 53)", "(60, 100)")
ADIENCE_AGE_RANGES = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 90))
ADIENCE_HEADER = ("user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
                  "tilt_ang", "fiducial_yaw_angle", "fiducial_score")

# ---------------------------------------------------------------------------------------------
# Appearance model
# ---------------------------------------------------------------------------------------------

# Per race: mean skin RGB, then mean multipliers of nose length, nose width, lip thickness,
# eye openness, eyebrow thickness, face width/height, and hair-colour / iris-colour palettes.
_RACE_LOOK = {
    "White": dict(skin=(228, 192, 170), nose_len=1.12, nose_w=0.88, lips=0.8, eye_h=1.0,
                  brow=0.9, aspect=0.76, curl=0.05,
                  hair=[((232, 200, 120), .2), ((150, 100, 55), .3), ((95, 62, 35), .3),
                        ((170, 75, 35), .08), ((35, 28, 24), .12)],
                  iris=[((70, 120, 190), .4), ((90, 130, 80), .2), ((110, 80, 45), .4)]),
    "Black": dict(skin=(110, 74, 52), nose_len=0.95, nose_w=1.4, lips=1.45, eye_h=1.0,
                  brow=1.0, aspect=0.82, curl=0.9,
                  hair=[((22, 18, 16), .9), ((60, 40, 28), .1)],
                  iris=[((55, 35, 22), 1.0)]),
    "East Asian": dict(skin=(236, 202, 164), nose_len=0.82, nose_w=1.0, lips=0.95, eye_h=0.5,
                       brow=0.85, aspect=0.9, curl=0.0,
                       hair=[((18, 16, 16), .85), ((60, 42, 30), .15)],
                       iris=[((45, 30, 20), 1.0)]),
    "Southeast Asian": dict(skin=(192, 148, 105), nose_len=0.85, nose_w=1.2, lips=1.1,
                            eye_h=0.68, brow=0.9, aspect=0.86, curl=0.1,
                            hair=[((18, 16, 16), .9), ((55, 38, 28), .1)],
                            iris=[((45, 30, 20), 1.0)]),
    "Indian": dict(skin=(165, 114, 82), nose_len=1.1, nose_w=1.1, lips=1.05, eye_h=1.12,
                   brow=1.25, aspect=0.76, curl=0.15,
                   hair=[((16, 14, 14), .9), ((50, 35, 25), .1)],
                   iris=[((40, 26, 18), 1.0)]),
    "Middle Eastern": dict(skin=(212, 170, 136), nose_len=1.3, nose_w=1.05, lips=0.95,
                           eye_h=0.95, brow=1.5, aspect=0.74, curl=0.3,
                           hair=[((20, 17, 15), .7), ((60, 40, 28), .3)],
                           iris=[((50, 34, 22), .85), ((95, 110, 70), .15)]),
    "Latino_Hispanic": dict(skin=(200, 152, 116), nose_len=1.0, nose_w=1.05, lips=1.12,
                            eye_h=0.92, brow=1.1, aspect=0.8, curl=0.35,
                            hair=[((28, 22, 18), .55), ((70, 46, 30), .35),
                                  ((120, 80, 45), .1)],
                            iris=[((55, 36, 22), .9), ((100, 85, 50), .1)]),
}
_BEARD_RATE = {"White": .35, "Black": .35, "East Asian": .12, "Southeast Asian": .18,
               "Indian": .45, "Middle Eastern": .65, "Latino_Hispanic": .4}


def _pick(rng: np.random.Generator, palette):
    colours, weights = zip(*palette)
    weights = np.asarray(weights, float)
    return colours[int(rng.choice(len(colours), p=weights / weights.sum()))]


def _mix(a, b, t: float):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _scale(colour, f: float):
    return tuple(min(255, max(0, int(round(c * f)))) for c in colour)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _identity(gender: int, age: float, race: str, rng: np.random.Generator) -> dict:
    """Sample the lasting features of one person (shared by all photos of that person)."""
    look = _RACE_LOOK[race]
    female = gender == 1
    adult = age >= 16
    jitter = lambda mean, sd=0.09: float(mean * (1 + sd * rng.standard_normal()))  # noqa: E731
    tone = 1 + 0.07 * rng.standard_normal()
    skin = tuple(int(np.clip(c * tone + 6 * rng.standard_normal(), 0, 255)) for c in look["skin"])
    # hair style: length in "face heights below the eyes" (0 = no back hair)
    if female:
        style = rng.choice(["long", "medium", "short", "bun"], p=[.68, .22, .06, .04])
    else:
        style = rng.choice(["short", "buzz", "medium", "long"], p=[.72, .22, .05, .01])
    if age < 2:
        style = "baby"
    bald = (not female) and adult and rng.random() < _sigmoid((age - 52) / 7) * 0.7
    beard = 0.0
    if not female and age >= 17:
        p = _BEARD_RATE[race] * min(1.0, (age - 15) / 10)
        if rng.random() < p:
            beard = float(rng.choice([0.35, 0.6, 0.9], p=[.4, .3, .3]))
    return dict(
        gender=int(gender), age=float(age), race=race, skin=skin,
        hair=_pick(rng, look["hair"]), iris=_pick(rng, look["iris"]), style=str(style),
        bald=bool(bald), beard=beard, curl=bool(rng.random() < look["curl"]),
        fringe=bool(rng.random() < (0.55 if race in ("East Asian", "Southeast Asian") else 0.25)),
        nose_len=jitter(look["nose_len"]), nose_w=jitter(look["nose_w"]),
        lips=jitter(look["lips"] * (1.12 if female else 0.92)),
        eye_h=jitter(look["eye_h"] * (1.08 if female else 1.0), 0.08),
        brow=jitter(look["brow"] * (0.65 if female else 1.15)),
        aspect=jitter(look["aspect"] * (0.95 if female else 1.05), 0.04),
        jaw=float(np.clip((3.2 if not female else 2.3) + 0.3 * rng.standard_normal(), 1.8, 4.0))
        if adult else 2.2,
        taper=float((0.16 if female else 0.08) + 0.03 * rng.standard_normal()),
        lipstick=bool(female and age >= 13 and rng.random() < 0.75),
        grey=float(np.clip(rng.normal(1.0, 0.2), 0.5, 1.5)),
        glasses=bool(rng.random() < (0.08 + 0.2 * (age > 45))),
        shirt=tuple(int(c) for c in rng.integers(20, 235, 3)),
    )


def _face_outline(cx, cy, a, b, jaw, taper, n=48):
    """Polygon of the face: an ellipse on top, a superellipse jaw below (squarer = larger jaw)."""
    pts = []
    for t in np.linspace(0, 2 * np.pi, n, endpoint=False):
        c, s = math.cos(t), math.sin(t)
        if s > 0:  # lower half: superellipse, narrowing towards the chin
            p = jaw
            x = math.copysign(abs(c) ** (2 / p), c) * (1 - taper * s)
            y = math.copysign(abs(s) ** (2 / p), s)
        else:
            x, y = c, s
        pts.append((cx + a * x, cy + b * y))
    return pts


def _paint(img: Image.Image, colour, alpha: float, draw_fn) -> None:
    """Draw a shape into a mask with ``draw_fn(ImageDraw)`` and blend ``colour`` through it."""
    mask = Image.new("L", img.size, 0)
    draw_fn(ImageDraw.Draw(mask))
    if alpha < 1:
        mask = mask.point([int(v * alpha) for v in range(256)])
    img.paste(colour + ((255,) if img.mode == "RGBA" else ()), (0, 0, *img.size), mask)


def _draw_person(ident: dict, rng: np.random.Generator, S: int) -> Image.Image:
    """The head and shoulders on a transparent S x S canvas."""
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    age, female = ident["age"], ident["gender"] == 1
    juv = float(np.clip((16 - age) / 16, 0, 1))  # 1 for a newborn, 0 from 16 years
    old = float(np.clip((age - 28) / 55, 0, 1))
    skin = ident["skin"]
    if age > 50:  # older skin: a little paler and less saturated
        skin = _mix(skin, (200, 190, 185), 0.15 * (age - 50) / 40)
    greyness = float(np.clip(_sigmoid((age - 47) / 6) * ident["grey"], 0, 1))
    hair = _mix(ident["hair"], (205, 205, 205), greyness)
    cx, cy = 0.5 * S, 0.47 * S
    b = S * (0.30 - 0.05 * juv)  # half face height: children have a short lower face
    a = b * ident["aspect"] * (1 + 0.12 * juv)
    chin_y = cy + b
    dark_skin = _scale(skin, 0.82)

    # shoulders, neck
    d.ellipse([cx - 0.48 * S, chin_y + 0.1 * S, cx + 0.48 * S, chin_y + 0.7 * S],
              fill=ident["shirt"] + (255,))
    d.rectangle([cx - 0.42 * a, cy + 0.3 * b, cx + 0.42 * a, chin_y + 0.2 * S],
                fill=dark_skin + (255,))
    # hair behind the head
    style, hc = ident["style"], hair + (255,)
    if style in ("long", "medium") and not ident["bald"]:
        drop = {"long": 0.62 * S, "medium": 0.25 * S}[style]
        w = a * (1.28 if style == "long" else 1.18)
        d.rounded_rectangle([cx - w, cy - 1.08 * b, cx + w, cy + drop], radius=int(0.9 * w),
                            fill=hc)
    if style == "bun":
        d.ellipse([cx - 0.35 * a, cy - 1.55 * b, cx + 0.35 * a, cy - 0.9 * b], fill=hc)
    # ears, face
    for side in (-1, 1):
        ex = cx + side * a * 0.97
        d.ellipse([ex - 0.13 * a, cy - 0.1 * b, ex + 0.13 * a, cy + 0.32 * b], fill=dark_skin + (255,))
    if ident["bald"]:  # a ring of hair round the sides, behind the face
        for side in (-1, 1):
            hx = cx + side * 0.92 * a
            d.ellipse([hx - 0.2 * a, cy - 0.55 * b, hx + 0.2 * a, cy + 0.1 * b], fill=hc)
    outline = _face_outline(cx, cy, a, b, ident["jaw"], ident["taper"])
    d.polygon(outline, fill=skin + (255,))

    # beard / stubble: the lower face below the nose
    if ident["beard"] > 0:
        lower = [p for p in _face_outline(cx, cy, a * 1.01, b * 1.02, ident["jaw"],
                                          ident["taper"], 96) if p[1] > cy + 0.3 * b]
        lower.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
        _paint(img, hair, ident["beard"], lambda m: m.polygon(lower, fill=255))

    # eyes: lower in the face and larger for children
    eye_y = cy - 0.1 * b + 0.18 * b * juv
    eye_dx = 0.42 * a
    ew = 0.2 * a * (1 + 0.3 * juv)
    eh = ew * 0.55 * ident["eye_h"] * (1 + 0.25 * juv)
    brow_col = _mix(_scale(hair, 0.9), (190, 190, 190), 0.7 * greyness) + (255,)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse([ex - ew, eye_y - eh, ex + ew, eye_y + eh], fill=(245, 245, 240, 255))
        ir = min(eh * 0.95, ew * 0.55)
        d.ellipse([ex - ir, eye_y - ir, ex + ir, eye_y + ir], fill=ident["iris"] + (255,))
        d.ellipse([ex - ir / 2.2, eye_y - ir / 2.2, ex + ir / 2.2, eye_y + ir / 2.2],
                  fill=(10, 10, 10, 255))
        lid = _scale(skin, 0.6) + (255,)
        d.arc([ex - ew, eye_y - eh, ex + ew, eye_y + eh], 190, 350, fill=lid,
              width=max(1, int(S / 100 * (1.5 if female else 1))))
        # eyebrows: thicker and lower for men, arched and thin for women
        bt = max(1, int(S / 60 * ident["brow"]))
        by = eye_y - eh - (0.12 + (0.05 if female else 0)) * b
        d.line([(ex - side * 1.0 * ew, by + 0.04 * b), (ex, by - (0.05 if female else 0.01) * b),
                (ex + side * 1.2 * ew, by + 0.03 * b)], fill=brow_col, width=bt, joint="curve")
        if age > 40:  # bags under the eyes
            _paint(img, _scale(skin, 0.7), min(0.8, (age - 40) / 40), lambda m: m.arc(
                [ex - ew, eye_y - 0.2 * eh, ex + ew, eye_y + 1.9 * eh], 30, 150, fill=255,
                width=max(1, S // 90)))
        if age > 45:  # crow's feet
            for k in (-1, 0, 1):
                x0 = ex + side * 1.15 * ew
                _paint(img, _scale(skin, 0.6), min(0.9, (age - 45) / 30), lambda m, x0=x0, k=k:
                       m.line([(x0, eye_y + k * 0.4 * eh),
                               (x0 + side * 0.35 * ew, eye_y + k * 0.9 * eh)], fill=255,
                              width=max(1, S // 110)))

    # nose
    nose_top, nose_bot = eye_y + 0.05 * b, eye_y + (0.42 - 0.1 * juv) * b * ident["nose_len"]
    nw = 0.17 * a * ident["nose_w"] * (1 - 0.25 * juv)
    shade = _scale(skin, 0.72) + (255,)
    d.line([(cx + 0.05 * a, nose_top), (cx + 0.08 * a, nose_bot)], fill=_scale(skin, 0.85) + (255,),
           width=max(1, S // 80))
    d.arc([cx - nw, nose_bot - 0.6 * nw, cx + nw, nose_bot + 0.5 * nw], 0, 180, fill=shade,
          width=max(1, S // 64))
    for side in (-1, 1):
        d.ellipse([cx + side * 0.5 * nw - 0.18 * nw, nose_bot - 0.05 * nw,
                   cx + side * 0.5 * nw + 0.18 * nw, nose_bot + 0.2 * nw], fill=_scale(skin, 0.5) + (255,))

    # mouth
    my = nose_bot + (0.27 - 0.04 * juv) * b
    mw = 0.34 * a * (1 - 0.2 * juv)
    lt = 0.05 * b * ident["lips"] * (1 - 0.3 * old)
    lip = (178, 42, 60) if ident["lipstick"] else _mix(_scale(skin, 0.78), (170, 80, 80), 0.35)
    d.ellipse([cx - mw, my - 1.3 * lt, cx + mw, my + 0.1 * lt], fill=lip + (255,))
    d.ellipse([cx - 0.85 * mw, my - 0.1 * lt, cx + 0.85 * mw, my + 1.6 * lt],
              fill=_scale(lip, 1.08) + (255,))
    d.line([(cx - mw, my), (cx + mw, my)], fill=_scale(lip, 0.45) + (255,), width=max(1, S // 128))

    # age lines: forehead, nasolabial folds
    if age > 25:
        strength = min(1.0, (age - 25) / 30)
        for k in range(1 + int(3 * old)):
            fy = eye_y - eh - 0.33 * b - k * 0.09 * b
            _paint(img, _scale(skin, 0.6), strength, lambda m, fy=fy: m.arc(
                [cx - 0.55 * a, fy, cx + 0.55 * a, fy + 0.25 * b], 200, 340, fill=255,
                width=max(1, S // 64)))
        for side in (-1, 1):
            _paint(img, _scale(skin, 0.62), strength, lambda m, side=side: m.line(
                [(cx + side * 1.25 * nw, nose_bot - 0.1 * nw), (cx + side * (mw + 0.05 * a),
                                                               my + 0.8 * lt)],
                fill=255, width=max(1, S // 90)))
    if age > 62:  # age spots
        for _ in range(int((age - 60) / 4)):
            sx, sy = cx + a * rng.uniform(-0.7, 0.7), cy + b * rng.uniform(-0.7, 0.5)
            r = S * rng.uniform(0.004, 0.008)
            _paint(img, _scale(skin, 0.75), 0.6, lambda m, sx=sx, sy=sy, r=r: m.ellipse(
                [sx - r, sy - r, sx + r, sy + r], fill=255))

    # hair on top
    if style == "baby":
        _paint(img, hair, 0.5, lambda m: m.chord([cx - 0.8 * a, cy - 1.05 * b, cx + 0.8 * a,
                                                  cy - 0.2 * b], 200, 340, fill=255))
    elif not ident["bald"]:
        thick = {"buzz": 1.02, "short": 1.1, "medium": 1.14, "long": 1.16, "bun": 1.08}[style]
        top = [cx - a * thick, cy - b * (1.0 + 0.08 * (thick - 1) * 10), cx + a * thick,
               cy + b * (0.1 if style != "buzz" else -0.2)]
        d.chord(top, 180, 360, fill=hc)
        if ident["curl"]:  # curly texture: small dark rings on the hair
            for _ in range(40):
                t = rng.uniform(np.pi, 2 * np.pi)
                r = rng.uniform(0.55, 1.0)
                hx, hy = cx + a * thick * r * math.cos(t), cy + b * 1.05 * r * math.sin(t)
                rr = S * 0.012
                d.ellipse([hx - rr, hy - rr, hx + rr, hy + rr], outline=_scale(hair, 0.5) + (255,))
        if ident["fringe"] and style != "buzz":
            d.chord([cx - a * 0.95, cy - b * 1.05, cx + a * 0.95, eye_y - eh - 0.1 * b], 0, 180,
                    fill=hc)
            d.rectangle([cx - a * 0.8, cy - b * 0.95, cx + a * 0.8, cy - 0.55 * b], fill=hc)
        # receding hairline for older men
        if not female and age > 40 and style != "buzz":
            rec = min(0.5, (age - 40) / 60)
            _paint(img, skin, 1.0, lambda m: m.ellipse(
                [cx - 0.45 * a, cy - b * (1.0 - rec * 0.1), cx + 0.45 * a, cy - b * (0.7 - rec)],
                fill=255))
    if ident["glasses"]:
        gc = (30, 30, 30, 255)
        for side in (-1, 1):
            ex = cx + side * eye_dx
            d.ellipse([ex - 1.35 * ew, eye_y - 1.5 * eh - 0.05 * b, ex + 1.35 * ew,
                       eye_y + 1.5 * eh + 0.05 * b], outline=gc, width=max(1, S // 70))
        d.line([(cx - eye_dx + 1.35 * ew, eye_y), (cx + eye_dx - 1.35 * ew, eye_y)], fill=gc,
               width=max(1, S // 70))
    return img


def _background(rng: np.random.Generator, S: int) -> np.ndarray:
    """A plain, gradient or blotchy backdrop, float (S, S, 3) in [0, 255]."""
    c0 = rng.uniform(20, 235, 3)
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:S, 0:S] / S
    if kind == 0:
        bg = np.broadcast_to(c0, (S, S, 3)).astype(float)
    elif kind == 1:
        c1 = rng.uniform(20, 235, 3)
        t = (xx * math.cos(rng.uniform(0, 6.3)) + yy * math.sin(rng.uniform(0, 6.3)) + 1) / 3
        bg = c0 + (c1 - c0) * t[..., None]
    else:
        small = rng.uniform(-45, 45, (6, 6, 3))
        blotch = np.asarray(Image.fromarray(((small + 128)).astype(np.uint8)).resize(
            (S, S), Image.BICUBIC), float) - 128
        bg = c0 + blotch
    return np.clip(bg, 0, 255)


def _draw(ident: dict, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """One photo of a person: pose, background, lighting and sensor noise. uint8 (H, W, 3)."""
    S = 2 * image_size
    person = _draw_person(ident, rng, S)
    # pose: small rotation, scale and offset (inverse affine map: output -> input)
    angle = math.radians(rng.normal(0, 6))
    scale = rng.uniform(0.9, 1.1)
    tx, ty = rng.normal(0, 0.04 * S, 2)
    ca, sa = math.cos(angle) / scale, math.sin(angle) / scale
    c = S / 2
    coeffs = (ca, sa, c - ca * (c + tx) - sa * (c + ty), -sa, ca, c + sa * (c + tx) - ca * (c + ty))
    person = person.transform((S, S), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    canvas = Image.fromarray(_background(rng, S).astype(np.uint8)).convert("RGBA")
    canvas.alpha_composite(person)
    small = canvas.convert("RGB").resize((image_size, image_size), Image.LANCZOS)
    if rng.random() < 0.3:
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    arr = np.asarray(small, float)
    # lighting: a directional gradient and a global exposure
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size - 0.5
    phi = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.9, 1.1) * (1 + rng.uniform(0, 0.4) * (xx * math.cos(phi) +
                                                                yy * math.sin(phi)))
    arr = arr * light[..., None] + rng.normal(0, rng.uniform(1, 6), arr.shape)
    return np.clip(arr, 0, 255).round().astype(np.uint8)


def render_face(gender: int, age: float, race: str, rng: np.random.Generator,
                image_size: int = 64) -> np.ndarray:
    """Draw one synthetic face of the given gender (0 male, 1 female), age and race. Lab 00.

    ``race`` is one of FairFace's seven groups (``RACES``); ``age`` is in years (0..90).
    Returns a uint8 array (image_size, image_size, 3). Face shape, hair, beard, skin tone, eye,
    nose and lip proportions follow the labels (with overlap between groups); pose, lighting,
    background and noise come from ``rng``.
    """
    if gender not in (0, 1):
        raise ValueError(f"gender must be 0 (male) or 1 (female), got {gender!r}.")
    if race not in RACES:
        raise ValueError(f"race must be one of {RACES}, got {race!r}.")
    if not 0 <= age <= MAX_AGE:
        raise ValueError(f"age must be in years between 0 and {MAX_AGE}, got {age!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16, got {image_size!r}.")
    return _draw(_identity(gender, age, race, rng), rng, image_size)


def _render_jpeg(task: tuple) -> bytes:
    """Worker: render one image from its own (seed, index) generators and JPEG-encode it."""
    seed, index, identity_key, gender, age, race, image_size = task
    rng = np.random.default_rng([seed, 0, index])
    id_rng = np.random.default_rng([seed, 1, *identity_key]) if identity_key else rng
    pixels = _draw(_identity(gender, age, race, id_rng), rng, image_size)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Labels for each layout
# ---------------------------------------------------------------------------------------------

def _fairface_group(age: int) -> str:
    return FAIRFACE_AGE_GROUPS[int(np.searchsorted(FAIRFACE_AGE_EDGES, age, side="right")) - 1]


def _adience_group(age: int) -> int:
    """Index of the Adience group holding ``age`` (ages in the gaps go to the nearest group)."""
    dist = [0 if lo <= age <= hi else min(abs(age - lo), abs(age - hi))
            for lo, hi in ADIENCE_AGE_RANGES]
    return int(np.argmin(dist))


_RACE_MIX = {  # latent race frequencies per layout, in RACES order
    "utkface": (.42, .19, .04, .08, .06, .17, .04),
    "fairface": (.19, .14, .15, .14, .12, .14, .12),
    "afad": (0, 0, 0, 1, 0, 0, 0),
    "adience": (.72, .06, .05, .06, .03, .04, .04),
}
_FEMALE_RATE = {"utkface": .48, "fairface": .47, "afad": .39, "adience": .53}


def _sample_age(layout: str, rng: np.random.Generator) -> int:
    if layout == "utkface":  # babies, a big peak at 20-35, a long tail
        part = rng.choice(4, p=[.12, .1, .45, .33])
        lo, hi = [(0, 9), (10, 19), (20, 35), (36, 90)][part]
        return int(rng.integers(lo, hi + 1))
    if layout == "fairface":
        g = rng.choice(9, p=[.03, .11, .11, .27, .2, .12, .09, .05, .02])
        return int(rng.integers(FAIRFACE_AGE_EDGES[g], FAIRFACE_AGE_EDGES[g + 1]))
    if layout == "afad":  # 15..40 core, thin tail to 72 (the real age folders end at 72)
        if rng.random() < 0.04:
            return int(rng.integers(41, 73))
        return int(rng.choice(np.arange(15, 41), p=_AFAD_CORE))
    g = rng.choice(8, p=[.1, .11, .1, .09, .3, .16, .07, .07])
    lo, hi = ADIENCE_AGE_RANGES[g]
    return int(rng.integers(lo, hi + 1))


_AFAD_CORE = np.exp(-((np.arange(15, 41) - 23) / 7.0) ** 2)
_AFAD_CORE /= _AFAD_CORE.sum()


def _written(layout: str, gender: int, age: int, race: str) -> dict:
    """The labels as the layout writes them."""
    if layout == "utkface":
        return {"age": age, "gender": gender, "race": UTK_RACE[race]}
    if layout == "fairface":
        return {"age": _fairface_group(age), "gender": ("Male", "Female")[gender], "race": race}
    if layout == "afad":
        return {"age": age, "gender": (111, 112)[gender]}
    return {"age": ADIENCE_AGE_GROUPS[_adience_group(age)], "gender": "mf"[gender]}


def _perturb(layout: str, written: dict, rng: np.random.Generator) -> tuple[str, dict]:
    """Change one label of ``written`` (a deliberate label error); returns (which, new labels)."""
    out = dict(written)
    which = str(rng.choice(sorted(written)))
    value = written[which]
    if which == "gender":
        out["gender"] = {0: 1, 1: 0, "Male": "Female", "Female": "Male", 111: 112, 112: 111,
                         "m": "f", "f": "m"}[value]
    elif which == "race":
        choices = sorted(set(UTK_RACE.values()) - {value}) if layout == "utkface" else \
            [r for r in RACES if r != value]
        out["race"] = choices[int(rng.integers(len(choices)))]
    elif layout in ("utkface", "afad"):
        lo, hi = (0, MAX_AGE) if layout == "utkface" else (15, 72)
        step = int(rng.integers(5, 16)) * (1 if rng.random() < 0.5 else -1)
        new = value + step if lo <= value + step <= hi else value - step
        out["age"] = int(np.clip(new, lo, hi))
    else:
        groups = FAIRFACE_AGE_GROUPS if layout == "fairface" else ADIENCE_AGE_GROUPS
        i = groups.index(value)
        j = i + (1 if (rng.random() < 0.5 and i + 1 < len(groups)) or i == 0 else -1)
        out["age"] = groups[j]
    return which, out


# ---------------------------------------------------------------------------------------------
# Writing the layouts
# ---------------------------------------------------------------------------------------------

def _utk_date(rng: np.random.Generator) -> str:
    day = int(rng.integers(0, 60))
    month, dom = (1, 1 + day % 31) if day < 31 else (1, 1 + day - 31 if day - 31 < 28 else 28)
    return (f"2017{month:02d}{min(dom, 28):02d}{int(rng.integers(0, 24)):02d}"
            f"{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
            f"{int(rng.integers(0, 1000)):03d}")


_DEFECTS = {  # layout -> (kind, count); fixed small counts
    "utkface": (("race_missing", 3), ("stray_space", 1), ("missing_dot", 1)),
    "fairface": (("missing_image", 2),),
    "afad": (("thumbs_db", 3),),
    "adience": (("age_none", 2), ("age_bare_number", 2), ("age_odd_range", 1),
                ("age_typo_25_23", 1), ("gender_u", 2), ("gender_empty", 1)),
}
# Defects planted after the label noise, on records with neither (so adding them changed no
# earlier draw, no noisy record and no image): a 16- and an 18-digit UTKFace date&time (the
# real download has both; intact labels), an Adience row lacking both age group and gender,
# and Adience rows written twice (same image, labels and fold, as 114 real rows are).
_LATE_DEFECTS = {
    "utkface": (("date_16_digits", 1), ("date_18_digits", 1)),
    "adience": (("age_none_gender_u", 1), ("duplicate_row", 2)),
}
# Defects that stop a sound default loader from using the image: no usable label, or no image
# (the (25, 23) typo is fixed to (25, 32) by such a loader, and Thumbs.db is an extra file,
# not a row). A duplicate row's image loads once; its second row is reported.
_UNUSABLE = {"race_missing", "stray_space", "missing_dot", "missing_image", "age_none_gender_u"}
# Labels a kept image lacks (the loader keeps it for its other tasks, <NA> in these columns).
_LACKS = {"age_none": ["age_group"], "age_bare_number": ["age_group"],
          "age_odd_range": ["age_group"], "gender_u": ["gender"], "gender_empty": ["gender"]}


def _plan(layout: str, n: int, seed: int, label_noise: float, defects: bool) -> list[dict]:
    """Decide every record (latent labels, identity, noise, defect, file name) up front."""
    rng = np.random.default_rng([seed, 2])
    female = _FEMALE_RATE[layout]
    records = []
    if layout == "adience":  # people with several photos each
        user = 0
        while len(records) < n:
            k = min(int(rng.integers(1, 9)), n - len(records))
            g, age, race = int(rng.random() < female), _sample_age(layout, rng), \
                RACES[rng.choice(7, p=_RACE_MIX[layout])]
            for _ in range(k):
                records.append(dict(gender=g, age=age, race=race, identity=[user]))
            user += 1
    else:
        for _ in range(n):
            records.append(dict(gender=int(rng.random() < female), age=_sample_age(layout, rng),
                                race=RACES[rng.choice(7, p=_RACE_MIX[layout])], identity=[]))
    for i, r in enumerate(records):
        r["index"] = i
        r["written"] = _written(layout, r["gender"], r["age"], r["race"])
        r["noise"] = r["defect"] = None
    order = rng.permutation(n)
    taken = 0
    if defects:
        for kind, count in _DEFECTS[layout]:
            for i in order[taken:taken + count]:
                records[i]["defect"] = kind
            taken += count
    n_noisy = int(round(label_noise * n))
    for i in order[taken:taken + n_noisy]:
        records[i]["noise"], records[i]["written"] = _perturb(layout, records[i]["written"], rng)
    if defects:  # no random draws here: the records above are unchanged
        taken += n_noisy
        for kind, count in _LATE_DEFECTS.get(layout, ()):
            for i in order[taken:taken + count]:
                records[i]["defect"] = kind
            taken += count
    _name_files(layout, records, rng)
    return records


def _name_files(layout: str, records: list[dict], rng: np.random.Generator) -> None:
    if layout == "utkface":
        seen = set()
        for r in records:
            date = _utk_date(rng)
            while date in seen:
                date = _utk_date(rng)
            seen.add(date)
            w = r["written"]
            name = {None: f"{w['age']}_{w['gender']}_{w['race']}_{date}.jpg.chip.jpg",
                    "race_missing": f"{w['age']}_{w['gender']}_{date}.jpg.chip.jpg",
                    "stray_space": f"{w['age']}_{w['gender']}_{w['race']}_{date} .jpg.chip.jpg",
                    "missing_dot": f"{w['age']}_{w['gender']}_{w['race']}_{date}jpg.chip.jpg",
                    "date_16_digits": f"{w['age']}_{w['gender']}_{w['race']}_{date[:-1]}"
                                      ".jpg.chip.jpg",
                    "date_18_digits": f"{w['age']}_{w['gender']}_{w['race']}_{date}8"
                                      ".jpg.chip.jpg",
                    }[r["defect"]]
            r["file"] = f"UTKFace/{name}"
    elif layout == "fairface":
        n_val = int(round(0.12 * len(records)))
        val = set(rng.permutation(len(records))[:n_val].tolist())
        counters = {"train": 0, "val": 0}
        for r in records:
            split = "val" if r["index"] in val else "train"
            counters[split] += 1
            r["file"] = f"{split}/{counters[split]}.jpg"
            r["service_test"] = bool(rng.random() < 0.5)
    elif layout == "afad":
        ids = rng.choice(np.arange(100000, 999999), size=len(records), replace=False)
        for r, sid in zip(records, ids):
            w = r["written"]
            r["subject"] = int(sid)
            r["file"] = f"AFAD-Full/{w['age']}/{w['gender']}/{sid}-{int(rng.integers(0, 5))}.jpg"
    else:
        users = {}
        for r in records:
            uid = users.setdefault(r["identity"][0], dict(
                id=f"{int(rng.integers(10**7, 10**8))}@N0{int(rng.integers(0, 9))}", faces=0,
                face0=int(rng.integers(1, 2000))))
            photo = f"{int(rng.integers(10**9, 10**10))}_{int(rng.integers(16**9, 16**10)):010x}_o.jpg"
            r["user_id"], r["original_image"] = uid["id"], photo
            r["face_id"] = uid["face0"] + uid["faces"]
            uid["faces"] += 1
            r["file"] = f"faces/{uid['id']}/coarse_tilt_aligned_face.{r['face_id']}.{photo}"
            r["aligned"] = f"aligned/{uid['id']}/landmark_aligned_face.{r['face_id']}.{photo}"
            w = r["written"]
            if r["defect"] == "age_none":
                w["age"] = "None"
            elif r["defect"] == "age_bare_number":
                w["age"] = str(int(np.clip(r["age"], 2, 57)))
            elif r["defect"] == "age_odd_range":
                w["age"] = ("(27, 32)", "(38, 42)", "(38, 48)", "(8, 23)")[int(rng.integers(4))]
            elif r["defect"] == "age_typo_25_23":
                w["age"] = "(25, 23)"
            elif r["defect"] == "gender_u":
                w["gender"] = "u"
            elif r["defect"] == "gender_empty":
                w["gender"] = ""
            elif r["defect"] == "age_none_gender_u":
                w["age"], w["gender"] = "None", "u"
        # folds: whole users, each to the fold with the fewest rows so far
        sizes = [0] * 5
        fold_of = {}
        for key in rng.permutation(sorted(users)).tolist():
            f = int(np.argmin(sizes))
            fold_of[users[key]["id"]] = f
            sizes[f] += users[key]["faces"]
        for r in records:
            r["fold"] = fold_of[r["user_id"]]
            r["geometry"] = [int(v) for v in (rng.integers(0, 900), rng.integers(0, 900),
                                              rng.integers(200, 1200), rng.integers(200, 1200),
                                              rng.integers(-180, 180), rng.integers(-60, 60),
                                              rng.integers(0, 200))]


def _write_tables(layout: str, records: list[dict], root: Path) -> None:
    """Write the layout's label files (CSV, fold files, listing)."""
    if layout == "fairface":
        for split in ("train", "val"):
            lines = ["file,age,gender,race,service_test"]
            for r in records:
                if r["file"].startswith(split + "/"):
                    w = r["written"]
                    lines.append(f"{r['file']},{w['age']},{w['gender']},{w['race']},"
                                 f"{r['service_test']}")
            (root / f"fairface_label_{split}.csv").write_text("\n".join(lines) + "\n")
    elif layout == "afad":
        base = root / "AFAD-Full"
        (base / "README.md").write_text(
            "# AFAD-Full (synthetic stand-in)\n\nImages under `<age>/<111|112>/` "
            "(111 = male, 112 = female), drawn by faceattr_lab.datasets.synthetic.\n")
        listing = sorted("./" + r["file"].split("/", 1)[1] for r in records)
        (base / "AFAD-Full.txt").write_text("\n".join(listing) + "\n")
    elif layout == "adience":
        for f in range(5):
            lines = ["\t".join(ADIENCE_HEADER)]
            for r in records:
                if r["fold"] == f:
                    w = r["written"]
                    lines.append("\t".join([r["user_id"], r["original_image"], str(r["face_id"]),
                                            w["age"], w["gender"], *map(str, r["geometry"])]))
                    if r["defect"] == "duplicate_row":  # the same row again
                        lines.append(lines[-1])
            (root / f"fold_{f}_data.txt").write_text("\n".join(lines) + "\n")


def _loader_root(layout: str) -> str:
    return {"utkface": "UTKFace", "afad": "AFAD-Full"}.get(layout, ".")


def _generate(root: Path, layout: str, n: int, seed: int, image_size: int, label_noise: float,
              defects: bool, workers: int) -> None:
    records = _plan(layout, n, seed, label_noise, defects)
    tasks = [(seed, r["index"], r["identity"], r["gender"], r["age"], r["race"], image_size)
             for r in records]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            images = pool.map(_render_jpeg, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
            _write_images(layout, records, images, root)
    else:
        _write_images(layout, records, map(_render_jpeg, tasks), root)
    _write_tables(layout, records, root)
    defect_list = [dict(file=r["file"], kind=r["defect"], usable=r["defect"] not in _UNUSABLE,
                        lacks=_LACKS.get(r["defect"], []))
                   for r in records if r["defect"]]
    if defects and layout == "afad":
        folders = sorted({str(Path(r["file"]).parent) for r in records})[:3]
        for folder in folders:
            (root / folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(56))
            defect_list.append(dict(file=f"{folder}/Thumbs.db", kind="thumbs_db", usable=False,
                                    lacks=[]))
        for r in records:  # thumbs_db records are ordinary images
            r["defect"] = None
    manifest = dict(
        generator="faceattr_lab.datasets.synthetic", version=GENERATOR_VERSION, seed=seed, n=n,
        layout=layout, image_size=image_size, label_noise=label_noise, defects=defects,
        loader_root=_loader_root(layout),
        n_noisy=sum(r["noise"] is not None for r in records),
        n_usable=n - sum(r["defect"] in _UNUSABLE for r in records),
        defect_list=defect_list,
        files=[dict(file=r["file"], gender=r["gender"], age=r["age"], race=r["race"],
                    written=r["written"], noise=r["noise"], defect=r["defect"],
                    **({"user_id": r["user_id"], "fold": r["fold"]} if layout == "adience" else {}))
               for r in records],
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _write_images(layout: str, records: list[dict], images, root: Path) -> None:
    for r, data in zip(records, images):
        if r["defect"] == "missing_image":
            continue
        path = root / r["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if layout == "adience":  # the landmark-aligned copy: a tighter crop of the same photo
            im = Image.open(io.BytesIO(data))
            s = im.size[0]
            m = s // 12
            aligned = im.crop((m, m, s - m, s - m)).resize(im.size, Image.BILINEAR)
            out = root / r["aligned"]
            out.parent.mkdir(parents=True, exist_ok=True)
            aligned.save(out, "JPEG", quality=90)


def _check_args(layout, n, seed, image_size, label_noise, defects):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    minimum = 30 if defects else 1
    if not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"n must be an int >= {minimum} (with defects={defects}), got {n!r}; "
                         "pass a larger n or defects=False.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16, got {image_size!r}.")
    if not 0 <= label_noise <= 0.5:
        raise ValueError(f"label_noise must be a fraction in [0, 0.5], got {label_noise!r}.")


def make_synthetic(root: str | Path, layout: str, n: int, seed: int = 0, image_size: int = 64,
                   label_noise: float = 0.03, defects: bool = True, *,
                   workers: int | None = None, overwrite: bool = False) -> Path:
    """Write ``n`` synthetic faces into ``root`` in a real dataset's on-disk layout. Lab 00.

    ``layout`` is ``"utkface"`` (``root/UTKFace/*.jpg.chip.jpg``), ``"fairface"`` (``train/``,
    ``val/`` and the two label CSVs in ``root``), ``"afad"`` (``root/AFAD-Full/<age>/<111|112>/``)
    or ``"adience"`` (five fold files, ``faces/`` and ``aligned/`` in ``root``). A fraction
    ``label_noise`` of the images gets one label deliberately changed; with ``defects=True`` a
    few of the real dataset's known defects are inserted. ``synthetic_manifest.json`` records
    everything. The whole folder appears at once (built in a temporary sibling, then moved),
    so an interrupted run leaves nothing. Returns ``root``; the loader reads
    ``root / manifest["loader_root"]``. ``workers`` processes render (default: the CPU count
    for large ``n``); the output does not depend on it.
    """
    _check_args(layout, n, seed, image_size, label_noise, defects)
    root = Path(root).expanduser().resolve()
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True or another "
                              "root.")
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 400 else 1
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _generate(tmp, layout, int(n), int(seed), int(image_size), float(label_noise),
                  bool(defects), workers)
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _manifest_matches(root: Path, **expected) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    expected["version"] = GENERATOR_VERSION
    return all(manifest.get(k) == v for k, v in expected.items())


def synthetic_dataset(layout: str = "utkface", n: int = 3000, image_size: int = 64,
                      seed: int = 0, label_noise: float = 0.03, defects: bool = True) -> Path:
    """A cached synthetic dataset in ``layout``; returns the folder its loader reads. Lab 00.

    Lives under ``config.data_dir() / "synthetic" / "<layout>-n<n>-px<size>-seed<seed>"``;
    generated on first use (about ten seconds for 3,000 images) and reused afterwards when its
    manifest matches the arguments. Pass the returned path to ``load_<layout>``.
    """
    from faceattr_lab import config

    _check_args(layout, n, seed, image_size, label_noise, defects)
    root = config.data_dir() / "synthetic" / f"{layout}-n{n}-px{image_size}-seed{seed}"
    want = dict(layout=layout, n=n, image_size=image_size, seed=seed, label_noise=label_noise,
                defects=defects)
    if not _manifest_matches(root, **want):
        try:
            make_synthetic(root, layout, n, seed, image_size, label_noise, defects,
                           overwrite=True)
        except OSError:  # another process finished the same dataset first
            if not _manifest_matches(root, **want):
                raise
    return root / _loader_root(layout)


# ---------------------------------------------------------------------------------------------
# A separate domain for pretraining: other people, another task (appearance attributes)
# ---------------------------------------------------------------------------------------------

HAIR_STYLES = ("baby", "bun", "buzz", "long", "medium", "short")
# attribute -> classes (a tuple) or None for a yes/no attribute; none of them is a lab's label
ATTRIBUTES = {"hair_style": HAIR_STYLES, "bald": None, "beard": None, "glasses": None,
              "lipstick": None, "fringe": None, "curl": None}
_ATTRIBUTE_STREAM = 9  # a random stream no dataset of make_synthetic draws from


def _render_attributes(task: tuple) -> tuple[np.ndarray, dict]:
    """Worker: one person of the attribute domain, drawn from its own (seed, index) generator."""
    seed, index, image_size = task
    rng = np.random.default_rng([seed, _ATTRIBUTE_STREAM, index])
    gender, age = int(rng.integers(2)), float(rng.uniform(0, MAX_AGE))
    race = RACES[int(rng.integers(len(RACES)))]
    ident = _identity(gender, age, race, rng)
    attributes = {"gender": gender, "age": round(age, 1), "race": race,
                  "hair_style": str(ident["style"]), "bald": bool(ident["bald"]),
                  "beard": bool(ident["beard"] > 0), "glasses": bool(ident["glasses"]),
                  "lipstick": bool(ident["lipstick"]), "fringe": bool(ident["fringe"]),
                  "curl": bool(ident["curl"])}
    return _draw(ident, rng, image_size), attributes


def attribute_faces(n: int, seed: int = 0, image_size: int = 32, workers: int | None = None):
    """Faces of a separate domain labelled with appearance attributes, for pretraining. Lab 03.

    Other people than any dataset of :func:`make_synthetic` (their own random stream; gender,
    race and age 0-90 drawn uniformly) and another task: the ``ATTRIBUTES`` (hair style, bald,
    beard, glasses, lipstick, fringe, curly hair), as CelebA's attributes are for real faces.
    Returns ``(images, table)``: uint8 ``(n, image_size, image_size, 3)`` and a DataFrame with
    the attributes plus the latent gender, age and race (for analysis, not for training).
    The same arguments give the same arrays, whatever ``workers`` is.
    """
    import pandas as pd

    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an int >= 16, got {image_size!r}.")
    tasks = [(int(seed), index, int(image_size)) for index in range(int(n))]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 400 else 1
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            drawn = list(pool.map(_render_attributes, tasks, chunksize=64))
    else:
        drawn = [_render_attributes(task) for task in tasks]
    images = np.stack([image for image, _ in drawn])
    return images, pd.DataFrame([attributes for _, attributes in drawn])
