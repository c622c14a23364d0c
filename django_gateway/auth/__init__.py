"""Consumer authentication: API keys (:mod:`.api_key`, stored in :mod:`.key_store`), JWTs
(:mod:`.jwt`, with material from :mod:`.jwt_credentials` and :mod:`.jwks`), brute-force blocking
and key usage; :mod:`.stage` runs them as the pipeline's authentication stage.
"""
