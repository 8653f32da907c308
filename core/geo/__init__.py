"""Sans-IO geolocation data: building MaxMind DB files (`mmdb`)."""
