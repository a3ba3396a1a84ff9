# train.smoke: 2 ranks x 1 thread train ResNet-8 for 2 epochs of 16 steps on 512 images with sgdm.
# Checks: exit 0, the JSON has every context and epoch key of the schema (docs/train.md), the
# losses are finite numbers and fall, accuracies lie in [0, 1], bytes and ratio are positive.
# Inputs: MPI (launcher list), TRAIN (binary), OUT (directory).
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(json ${OUT}/smoke.json)
execute_process(
  COMMAND ${MPI} ${TRAIN} --preset sgdm --model resnet8 --epochs 2 --batch 16 --lr 0.05
          --train-subset 512 --test-subset 256 --seed 1 --threads 1 --progress lines --json ${json}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 240)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gradcomp-train exited with ${rc}")
endif()
file(READ ${json} j)

foreach(key tool preset model ranks split train_images test_images batch_per_worker epochs seed
            device hostname git_sha date)
  string(JSON v ERROR_VARIABLE e GET "${j}" context ${key})
  if(e)
    message(FATAL_ERROR "context.${key} missing: ${e}")
  endif()
endforeach()
string(JSON tool GET "${j}" context tool)
string(JSON ranks GET "${j}" context ranks)
string(JSON ntrain GET "${j}" context train_images)
if(NOT tool STREQUAL "gradcomp-train" OR NOT ranks EQUAL 2 OR NOT ntrain EQUAL 512)
  message(FATAL_ERROR "context: tool='${tool}' ranks=${ranks} train_images=${ntrain}")
endif()

string(JSON n LENGTH "${j}" epochs)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected 2 epoch records, got ${n}")
endif()
foreach(i 0 1)
  foreach(key epoch train_loss test_accuracy images_per_s wall_s compute_s compress_s
              communicate_s update_s bytes_up_per_worker bytes_down_per_worker compression_ratio)
    string(JSON t ERROR_VARIABLE e TYPE "${j}" epochs ${i} ${key})
    if(e OR NOT t STREQUAL "NUMBER")
      message(FATAL_ERROR "epochs[${i}].${key}: type '${t}' ${e} (a finite number expected)")
    endif()
  endforeach()
  string(JSON acc GET "${j}" epochs ${i} test_accuracy)
  string(JSON up GET "${j}" epochs ${i} bytes_up_per_worker)
  string(JSON ratio GET "${j}" epochs ${i} compression_ratio)
  if(acc LESS 0 OR acc GREATER 1 OR NOT up GREATER 0 OR NOT ratio GREATER 0)
    message(FATAL_ERROR "epochs[${i}]: accuracy ${acc}, bytes_up ${up}, ratio ${ratio}")
  endif()
endforeach()
string(JSON l1 GET "${j}" epochs 0 train_loss)
string(JSON l2 GET "${j}" epochs 1 train_loss)
if(NOT l2 LESS l1)
  message(FATAL_ERROR "training loss did not fall: epoch 1 ${l1}, epoch 2 ${l2}")
endif()
# ln(10) = 2.30 is the loss of a uniform guess: the first epoch must already beat it.
if(NOT l1 LESS 2.3026)
  message(FATAL_ERROR "epoch 1 loss ${l1} is no better than guessing")
endif()
message(STATUS "smoke OK: loss ${l1} -> ${l2}")
