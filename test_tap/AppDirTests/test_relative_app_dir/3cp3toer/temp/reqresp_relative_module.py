from twisted_reqresp import Router
router = Router()
