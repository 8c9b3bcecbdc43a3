"""Periodic security assessment of the agencies' assets (issue 17, "periodic assessment"): open ports against the
inventory, TLS, HTTP security headers, SSH algorithms, and software versions from banners against an imported
vulnerability dataset. Each concern is one module; the tools doing the probing are nmap, sslyze and ssh-audit
(docs/assessment.md).

    settings.py  the ``assessment`` section of the configuration
    scope.py     what may be scanned: inventory addresses the configuration allows, nothing else
    services.py  inventory service names -> the ports they expose
    nmap.py      open ports and service banners (nmap, XML output)
    tls.py       protocol versions, cipher suites, certificates (sslyze's Python API)
    headers.py   HTTP security headers (httpx)
    ssh.py       SSH algorithms and banner (ssh-audit, JSON output)
    vulns.py     NVD CVE JSON 2.0 import; software from banners matched against it
    findings.py  findings as documents: stable ids, status, due dates, fixed and regressions
    runner.py    one assessment: targets, rate limit, checks, findings
    service.py   the extension: the schedule and the on-demand service the API uses
    cli.py       `soc assess run | findings | import-vulns`
"""
