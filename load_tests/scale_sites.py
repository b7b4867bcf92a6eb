"""Generated configurations of N sites, as a hosting company has them.

Each site has two host names, an upstream and a controller name, nothing
else: what a platform writes for a customer who changed no default. The
scale benchmark and its tests build their files with `write_config`.
"""

from __future__ import annotations

from pathlib import Path


def site_name(index: int) -> str:
    return f"customer{index:05d}"


def site_table(index: int, upstream: str, controller: str | None = None) -> str:
    """One site's table; `controller` other than the default is how a reload "changes one site"."""
    name = site_name(index)
    return (f"[sites.{name}]\n"
            f"hosts = [\"{name}.example\", \"www.{name}.example\"]\n"
            f"upstream = \"{upstream}\"\n"
            f"[sites.{name}.consent]\n"
            f"controller = \"{controller or f'Customer {index} B.V.'}\"\n")


def sites_text(count: int, upstream: str, changed: dict[int, str] | None = None) -> str:
    """Only the `[sites.…]` tables, for a caller that writes its own `[server]`."""
    changed = changed or {}
    return "\n".join(site_table(index, upstream, changed.get(index)) for index in range(count))


def config_text(count: int, upstream: str, *, listen: str = "127.0.0.1:8080", data_dir: str = "data",
                workers: int = 1, admin_listen: str | None = None, changed: dict[int, str] | None = None) -> str:
    """A whole configuration file of `count` sites; `changed` maps a site's index to another controller."""
    head = ["[server]", f"listen = [\"{listen}\"]", f"workers = {workers}", f"data_dir = \"{data_dir}\""]
    if admin_listen:
        head.append(f"admin_listen = \"{admin_listen}\"")
    return "\n".join(head) + "\n\n" + sites_text(count, upstream, changed)


def write_config(path: Path, count: int, upstream: str, **options: object) -> Path:
    path.write_text(config_text(count, upstream, **options))  # type: ignore[arg-type]
    return path


def host_of(index: int) -> str:
    return f"{site_name(index)}.example"
