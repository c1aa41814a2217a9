"""The emofusion web service: SageMaker routes, the /v1 API, accounts, quotas, jobs, web page."""
