"""Train a DCT-Net texture translation network (TTN) as a portrait-stylize style.

    accelerate launch train/tttn.py --photos PHOTOS/ --styles STYLE_IMAGES/ --output OUT/ [options]

Runs on CPU, one GPU or many (``accelerate launch --multi_gpu``), with mixed precision, resumes
from ``--resume_from_checkpoint latest``, logs to TensorBoard (``OUT/logs``), writes sample grids
(``OUT/samples/step-N.png``: photo | stylized) and ends with ``OUT`` being a style folder:
``ps.load_style("OUT")``. Defaults follow DCT-Net / White-box (see ``--help``); any option can
also come from ``--config file.yaml`` (command-line flags win).

Losses (weights as flags): surface adversarial (SN-PatchGAN on the guided-filtered image,
r=5, eps=0.2), texture adversarial (SN-PatchGAN on a random colour-shift grayscale), both LSGAN;
content = L1 of VGG19 conv4_4 features against the photo and against the output's SLIC
superpixel average; total variation; DCT-Net's facial perception loss (an expression regressor
trained on the photos keeps eye/mouth opening); optionally paper 2's region-masked Gram loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from portrait_stylize.models import TTNStyle
from portrait_stylize.models.serialization import save_style
from portrait_stylize.models.ttn import TTN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `accelerate launch train/tttn.py` from a clone
from train import common, losses
from train.data import batch, load_set, step_rng
from train.nets import ContentNet, ExpressionRegressor, PatchDiscriminator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML/JSON file of option values (flags override it)")
    g = p.add_argument_group("data")
    g.add_argument("--photos", help="folder of photos (content domain), searched recursively")
    g.add_argument("--styles", help="folder of style images (unpaired with the photos)")
    g.add_argument("--calibrated", action="append", default=[],
                   help="extra style folder (e.g. from calibrate.py); repeatable")
    g.add_argument("--resolution", type=int, default=256, help="training crop side (default 256, as the paper)")
    g.add_argument("--align-faces", action="store_true",
                   help="crop photos to aligned faces with the library's face pipeline")
    g.add_argument("--no-expand", action="store_true",
                   help="turn off geometry expansion (flip, scale 0.8-1.2, rotation ±10°)")
    g = p.add_argument_group("model")
    g.add_argument("--channels", type=int, default=32)
    g.add_argument("--num-blocks", type=int, default=4)
    g.add_argument("--gf-eps", type=float, default=1e-2, help="guided-filter eps of the trained TTN (DCT-Net 1e-2)")
    g.add_argument("--bg", choices=("head", "train"), default="head",
                   help="background network: reuse the head (default) or train a second TTN on unaligned photos")
    g = p.add_argument_group("losses")
    g.add_argument("--surface-weight", type=float, default=0.1)
    g.add_argument("--texture-weight", type=float, default=1.0)
    g.add_argument("--content-weight", type=float, default=200.0, help="photo and superpixel content terms")
    g.add_argument("--tv-weight", type=float, default=1e4)
    g.add_argument("--expression-weight", type=float, default=10.0, help="facial perception loss (0 = off)")
    g.add_argument("--local-style-weight", type=float, default=0.0, help="region-masked Gram loss (paper 2), 0 = off")
    g.add_argument("--local-regions", default="skin,hair,lips,eyes,brows", help="regions for the local style loss")
    g.add_argument("--content-net", choices=("vgg19", "random"), default="vgg19",
                   help="VGG19 with torchvision's ImageNet weights, or a fixed random VGG19 (offline runs, tests)")
    g.add_argument("--superpixel-segments", type=int, default=200)
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.99))
    g.add_argument("--batch-size", type=int, default=16, help="per process")
    common.add_run_options(p, max_steps=10_000)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return common.parse_run_args(build_parser(), argv)


def main(args: argparse.Namespace) -> Path:
    accelerator, output = common.start_run(args)
    # Before the data: a missing metric network or a bad validation folder ends the run in
    # seconds, not after the training photos are read and aligned.
    validation = common.start_validation(accelerator, args)
    main_process, res, bsz = accelerator.is_main_process, args.resolution, args.batch_size
    regions = [r for r in args.local_regions.split(",") if r] if args.local_style_weight > 0 else None
    photos = load_set([args.photos], "--photos", res, args.align_faces, args.expression_weight > 0, regions,
                      main_process)
    styles = load_set([args.styles, *args.calibrated], "--styles", res, progress=main_process)
    sets = {"head": photos}
    if args.bg == "train":
        sets["bg"] = load_set([args.photos], "--photos", res, progress=main_process) if args.align_faces else photos
    if main_process:
        print(photos.describe("photos"), "|", styles.describe("style images"))

    ttn_kwargs = {"channels": args.channels, "num_blocks": args.num_blocks, "gf_eps": args.gf_eps}
    generators = {part: TTN(**ttn_kwargs) for part in sets}
    d_surface, d_texture = PatchDiscriminator(3), PatchDiscriminator(1)
    regressor = ExpressionRegressor()
    content_net = ContentNet(args.content_net, seed=args.seed)
    adam = dict(lr=args.lr, betas=tuple(args.betas))
    opt_g = torch.optim.Adam([p for g in generators.values() for p in g.parameters()], **adam)
    opt_d = torch.optim.Adam([*d_surface.parameters(), *d_texture.parameters()], **adam)
    opt_r = torch.optim.Adam(regressor.parameters(), **adam)
    # Each network is prepared on its own so that, on several GPUs, every one is wrapped for
    # gradient synchronisation; each is called once per backward (real and fake concatenated).
    *nets, d_surface, d_texture, regressor, opt_g, opt_d, opt_r = accelerator.prepare(
        *generators.values(), d_surface, d_texture, regressor, opt_g, opt_d, opt_r)
    generators = dict(zip(generators, nets))
    content_net.to(accelerator.device)
    start = common.resume(accelerator, args, output, "tttn")
    shown = list(range(min(4, len(photos.samples))))
    preview = batch(photos.samples, step_rng(args.seed, 0), len(shown), res, expand=False, indices=shown)["image"]
    device = accelerator.device
    bar = tqdm(range(start, args.max_steps), initial=start, total=args.max_steps, desc="training",
               disable=not main_process)
    for step in bar:
        rng = step_rng(args.seed, step, accelerator.process_index)
        style = batch(styles.samples, rng, bsz, res, not args.no_expand)["image"].to(device)
        shift = losses.random_colour_weights(bsz, torch.Generator().manual_seed(args.seed * 1_000_003 + step))
        inputs = {part: batch(s.samples, rng, bsz, res, not args.no_expand) for part, s in sets.items()}
        fakes = {part: generators[part](b["image"].to(device)) for part, b in inputs.items()}
        fake = torch.cat(list(fakes.values()))
        shifts = shift.repeat(len(fakes), 1)

        real_s, fake_s = d_surface(torch.cat([losses.surface(style), losses.surface(fake.detach())])).split(
            [bsz, len(fake)])
        real_t, fake_t = d_texture(torch.cat([losses.texture(style, shift),
                                              losses.texture(fake.detach(), shifts)])).split(
            [bsz, len(fake)])
        d_loss = losses.lsgan_d(real_s, fake_s) + losses.lsgan_d(real_t, fake_t)
        opt_d.zero_grad()
        accelerator.backward(d_loss)
        opt_d.step()

        head = inputs["head"]
        photo, expression, valid = head["image"].to(device), head["expression"].to(device), head["valid"].to(device)
        r_loss = losses.expression_loss(regressor(photo), expression, valid)
        if args.expression_weight > 0:
            opt_r.zero_grad()
            accelerator.backward(r_loss)
            opt_r.step()

        real = torch.cat([b["image"] for b in inputs.values()]).to(device)
        terms = {"surface": losses.lsgan_g(d_surface(losses.surface(fake))),
                 "texture": losses.lsgan_g(d_texture(losses.texture(fake, shifts))),
                 "content": 0.0, "tv": losses.tv_loss(fake), "expression": 0.0, "local_style": 0.0}
        f_fake = content_net(fake)
        with torch.no_grad():
            f_real = content_net(real)
            f_super = content_net(losses.superpixel_average(fake, args.superpixel_segments).to(device))
        terms["content"] = F.l1_loss(f_fake, f_real) + F.l1_loss(f_fake, f_super)
        if args.expression_weight > 0:
            terms["expression"] = losses.expression_loss(regressor(fakes["head"]), expression, valid)
        if regions:
            with torch.no_grad():
                f_style = content_net(style)
            terms["local_style"] = losses.masked_gram_loss(f_fake[:bsz], f_style, head["mask"].to(device))
        weights = {"surface": args.surface_weight, "texture": args.texture_weight, "content": args.content_weight,
                   "tv": args.tv_weight, "expression": args.expression_weight, "local_style": args.local_style_weight}
        g_loss = sum(weights[k] * v for k, v in terms.items())
        opt_g.zero_grad()
        accelerator.backward(g_loss)
        opt_g.step()

        done = step + 1
        common.after_step(accelerator, args, output, done,
                          {"d_loss": d_loss, "g_loss": g_loss, "regressor": r_loss, **terms}, bar)
        if common.sample_due(accelerator, args, done):
            _sample(accelerator, generators, preview, output, done)
        if common.validation_due(args, validation, done):
            common.validate(accelerator, validation, output, done, accelerator.unwrap_model(generators["head"]),
                            args.name or output.name)

    common.finish(accelerator, args, output, lambda: _write_style(
        args, {part: accelerator.unwrap_model(net) for part, net in generators.items()}, output, photos, styles))
    return output


@torch.no_grad()
def _sample(accelerator, generators, preview: torch.Tensor, output: Path, step: int) -> None:
    """photo | stylized rows for fixed photos -> OUT/samples/step-N.png and TensorBoard."""
    net = accelerator.unwrap_model(generators["head"])
    fake = net(preview.to(accelerator.device))
    common.save_samples(accelerator, common.grid([[p, f] for p, f in zip(preview, fake)]), output, step)


def _write_style(args, generators: dict, output: Path, photos, styles) -> None:
    """Write OUT as a style folder (config.json, model.safetensors, README.md model card)."""
    name = args.name or output.name
    model = TTNStyle(head=generators["head"].config, bg=generators["bg"].config if "bg" in generators else None,
                     channel_order="rgb", name=name, description=args.description or "Trained with train/tttn.py",
                     licence=args.licence, source="train/tttn.py")
    model.head.load_state_dict(generators["head"].state_dict())
    if "bg" in generators:
        model.bg.load_state_dict(generators["bg"].state_dict())
    extra = common.card_extra(args, "photo | stylized",
                              f"Data: {photos.describe('photos')}; {styles.describe('style images')}.")
    save_style(model, output, card_extra=extra, load_name=str(output))


if __name__ == "__main__":
    main(parse_args())
