"""The local stack: the AWS stand-in (moto server), the resources the app needs, demo users and tokens."""
