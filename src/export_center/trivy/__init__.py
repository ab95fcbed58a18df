"""trivy"""
