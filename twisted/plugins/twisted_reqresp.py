from twisted.application.service import ServiceMaker

reqresp = ServiceMaker(
    "reqresp",
    "twisted_reqresp._app.tap",
    "Serve a twisted-reqresp request/response responder on one or more endpoints.",
    "reqresp",
)
