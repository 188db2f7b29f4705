// The HTTP server lives here (autoglm serve).
