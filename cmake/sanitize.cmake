# TFU_SANITIZE: ASan + UBSan on everything (tests run with halt_on_error so that any report fails).
if(TFU_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
