"""retouchd: a watch-folder daemon for text removal, object removal and upscaling."""

__version__ = "0.1.0"
