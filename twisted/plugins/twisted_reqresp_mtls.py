from twisted_reqresp._app.mtls import MutualTLSServerParser

mtls = MutualTLSServerParser()
