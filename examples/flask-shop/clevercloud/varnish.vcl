# Written as on the platform: no `vcl 4.1;` line and no backend, flowctl adds both.
sub vcl_recv {
    # The health endpoint must always reach the app.
    if (req.url == "/health") {
        return (pass);
    }
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
