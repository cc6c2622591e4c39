"""The FaceScrub downloader: HTTP client, proxies, per-host scheduling, manifest and progress report."""
