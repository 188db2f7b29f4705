// The load generator lives here (autoglm bench).
